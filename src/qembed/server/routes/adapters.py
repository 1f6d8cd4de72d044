"""``/v1/adapters``: the LoRA adapters served over the embedding models, loaded and unloaded at
run time (:mod:`qembed.server.adapters`). Listing takes the API key like every route; loading and
unloading take the admin key (``--admin-key``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from pydantic import BaseModel, ConfigDict, Field

from qembed.errors import InputError, ModelNotServedError
from qembed.server.adapters import AdapterConflictError, check_admin_key
from qembed.server.errors import authorization_of
from qembed.server.schemas import ErrorResponse

#: Every path of this module (the middleware leaves their key to the routes: the admin key).
PREFIX = "/v1/adapters"
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 503)}


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=128,
                      description="The name requests give as `model` (no ':' or '/').")
    path: str = Field(..., min_length=1, max_length=4096,
                      description="The adapter's folder on the server (made by `qembed finetune embedding`).")
    model: str | None = Field(None, description="The served embedding model it runs over (default: the first).")


class AdapterCard(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: str = "adapter"
    parent: str = Field(..., description="The served model the adapter runs over.")


class AdapterList(BaseModel):
    object: str = "list"
    data: list[AdapterCard]


async def _require_admin(request: Request) -> None:
    check_admin_key(authorization_of(request.scope.get("headers")), request.app.state.settings.admin_key)


async def _require_api_key(request: Request) -> None:
    from qembed.server.app import require_auth

    await require_auth(request)


def _engine(served: Any) -> Any:
    served.require()  # 503 while it loads or restarts
    engine = served.engine
    if engine is None or not callable(getattr(engine, "adapter_op", None)):
        raise InputError(f"the model {served.name!r} cannot serve LoRA adapters (a proxied endpoint)",
                         param="model", code="invalid_adapter")
    return engine


async def _run(served: Any, op: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.wrap_future(_engine(served).adapter_op(op))


def _card(served: Any, info: dict[str, Any]) -> AdapterCard:
    return AdapterCard(**{k: v for k, v in info.items() if k not in ("name", "object", "parent")},
                       id=info["name"], parent=served.name)


class _SharedPathRoute(APIRoute):
    """A 405 whose ``Allow`` lists every method of the path (GET and POST are two routes here)."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = sorted({m for r in scope["app"].router.routes if getattr(r, "path", None) == self.path
                              for m in (getattr(r, "methods", None) or ())})
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(allowed)})
        await super().handle(scope, receive, send)


router = APIRouter(tags=["Adapters"], route_class=_SharedPathRoute)


@router.get(PREFIX, response_model=AdapterList, responses=_ERRORS, dependencies=[Depends(_require_api_key)],
            summary="List the LoRA adapters served over each embedding model")
async def list_adapters(request: Request) -> AdapterList:
    cards = []
    for served in request.app.state.registry.of_kind("embedding"):
        if served.status == "ready" and callable(getattr(served.engine, "adapter_op", None)):
            result = await _run(served, {"op": "list"})
            cards += [_card(served, info) for info in result["adapters"]]
    return AdapterList(data=cards)


@router.post(PREFIX, response_model=AdapterCard, responses=_ERRORS, dependencies=[Depends(_require_admin)],
             summary="Load a LoRA adapter (admin key)",
             description="Loads the PEFT LoRA adapter in `path` over `model` (default: the first embedding "
                         "model) in its engine, and answers once it is loaded; requests then name it as "
                         "`model` (or `BASE:NAME`). 400 `invalid_adapter` for a folder that is not an "
                         "adapter of that model, 409 `adapter_exists` for a name already served, 401 without "
                         "the admin key, 403 with another key.")
async def load_adapter(body: AdapterRequest, request: Request) -> AdapterCard:
    registry = request.app.state.registry
    served, adapter = registry.resolve(body.model, "embedding")
    if adapter is not None:
        raise InputError(f"{body.model!r} is an adapter; name the base model", param="model")
    if registry.find(body.name) is not None:
        raise AdapterConflictError(f"a served model or adapter is already named {body.name!r}; unload it "
                                   "first or pick another name", param="name", code="adapter_exists")
    result = await _run(served, {"op": "load", "name": body.name, "path": body.path})
    return _card(served, result["adapter"])


@router.delete(PREFIX + "/{name}", responses=_ERRORS, dependencies=[Depends(_require_admin)],
               summary="Unload a LoRA adapter (admin key)",
               description="Requests naming it then get 404 `model_not_found`.")
async def unload_adapter(name: str, request: Request) -> dict[str, Any]:
    if not name.strip() or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InputError("the adapter name is blank or holds a control character", param="name")
    found = request.app.state.registry.find(name)
    if found is None or found[1] is None:
        raise ModelNotServedError(f"no adapter {name!r} is loaded (GET /v1/adapters)", param="name",
                                  code="model_not_found")
    served, adapter = found
    await _run(served, {"op": "unload", "name": adapter})
    return {"id": adapter, "object": "adapter", "deleted": True}
