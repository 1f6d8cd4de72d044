"""``/v1/topics``: the served topic model — show it, place texts in it, fold texts in, fit it.

Mounted on every server; it serves a topic model when the server runs with one
(``qembed serve --topic-model DIR``): :func:`setup` loads the folder once the model is ready and
refuses a topic model made with another embedding model or vector size (the server does not start).
A folder that does not exist yet is created by ``POST /v1/topics/fit``.

- ``GET /v1/topics``: the topics (:func:`qembed.envelope.topics_body`, as ``qembed topics show --json``);
- ``POST /v1/topics/assign``: place texts (nothing changes; as ``qembed topics assign --json``);
- ``POST /v1/topics/update``: fold texts in, save the folder, answer the new rows, the proposed
  topics and the size changes (as ``qembed topics update --json``);
- ``POST /v1/topics/fit``: cluster texts into a new topic model and save it (``replace`` to
  overwrite a fitted one).

Writes (update, fit) are serialised and saved before the response is sent; reads see the model as
it was before or after a write, never half of one. Texts are embedded through the batching queue
from a worker thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat

from qembed.config import Settings
from qembed.envelope import topic_assign_body, topic_update_body, topics_body
from qembed.errors import InputError, NotFoundError
from qembed.server.routes import served_name, task_encoder
from qembed.server.schemas import Integer, Text

logger = logging.getLogger(__name__)

router = APIRouter(tags=["Topics"])

#: Most texts one /v1/topics/fit request may hold (as /v1/cluster).
MAX_FIT_TEXTS = 10_000


class TopicTextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["花呗还款又失败了", "The striker scored in the last minute"]}]})

    input: list[Text] = Field(..., description="Texts to place (1 to the server's max_client_batch_size).")
    model: Text | None = Field(None, description="The served model name (optional).")


class TopicUpdateRequest(TopicTextsRequest):
    new_topics: StrictBool = Field(True, description="Propose new topics from groups of outliers.")


class TopicFitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["花呗还款总是失败", "每次还花呗都提示系统错误", "Where is my package?", "My parcel has not arrived"],
         "clusters": 2}]})

    input: list[Text] = Field(..., description=f"Texts to fit on (2..{MAX_FIT_TEXTS}).")
    method: Text = Field("kmeans", description="kmeans or hdbscan.")
    clusters: Integer | Literal["auto"] | None = Field(
        None, description="kmeans: number of topics (≥ 2) or 'auto' (best silhouette; the default).")
    min_cluster_size: Integer | None = Field(None, description="hdbscan: smallest topic.")
    seed: Integer = Field(0, ge=0, le=2**32 - 1, description="Random seed; the same seed gives the same topics.")
    outlier_quantile: StrictFloat | Integer = Field(0.95, description="Share (0.5..1) of a topic's held-out "
                                                    "distances a new text may reach before it is an outlier.")
    replace: StrictBool = Field(False, description="Replace the topic model the server holds.")
    model: Text | None = Field(None, description="The served model name (optional).")


def setup(app: FastAPI, settings: Settings) -> None:
    """Load the topic model named by ``settings.topic_model`` (none yet: ``POST /v1/topics/fit`` makes it)."""
    app.state.topic_model = None
    app.state.topic_model_path = settings.topic_model
    app.state.topic_model_lock = threading.Lock()
    if not settings.topic_model:
        return
    from qembed.clustering.topic_model import MANIFEST, TopicModel

    path = Path(settings.topic_model)
    if not (path / MANIFEST).is_file():
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InputError(f"--topic-model {path} is not a topic model folder")
        logger.info("no topic model in %s yet: POST /v1/topics/fit makes one", path)
        return
    app.state.topic_model = TopicModel.load(path, app.state.encoder)
    logger.info("serving topic model %s (%d topics, revision %d)", path, len(app.state.topic_model.topics),
                app.state.topic_model.revision)


def _path(request: Request) -> str:
    path = getattr(request.app.state, "topic_model_path", None)
    if not path:
        raise NotFoundError("this server has no topic model: start it with 'qembed serve --topic-model DIR'",
                            code="no_topic_model")
    return path


def _model(request: Request):
    _path(request)
    tm = request.app.state.topic_model
    if tm is None:
        raise NotFoundError("the topic model is not fitted yet: POST /v1/topics/fit first", code="no_topic_model")
    return tm


def _texts(request: Request, texts: list[str], limit: int | None = None) -> None:
    limit = limit or request.app.state.settings.max_client_batch_size
    if not texts:
        raise InputError("input is empty: pass at least one text", param="input")
    if len(texts) > limit:
        raise InputError(f"input has {len(texts)} texts, more than the limit of {limit}", param="input",
                         code="too_many_inputs")
    for i, t in enumerate(texts):
        if not t.strip():
            raise InputError(f"input[{i}] is empty", param="input")


@router.get("/v1/topics", summary="The served topic model's topics")
async def show_topics(request: Request) -> dict[str, Any]:
    tm = _model(request)
    return topics_body(tm, model=served_name(request))


@router.post("/v1/topics/assign", summary="Place texts in the served topic model's topics")
async def assign_topics(body: TopicTextsRequest, request: Request) -> dict[str, Any]:
    encoder, _ = task_encoder(request, body.model, None, bound_to="the topic model")
    tm = _model(request)
    _texts(request, body.input)
    rows = await run_in_threadpool(tm.assign, body.input, encoder=encoder)
    return topic_assign_body(rows, model=served_name(request), revision=tm.revision)


@router.post("/v1/topics/update", summary="Fold texts into the served topic model (ids stay)")
async def update_topics(body: TopicUpdateRequest, request: Request) -> dict[str, Any]:
    encoder, _ = task_encoder(request, body.model, None, bound_to="the topic model")
    _model(request)
    _texts(request, body.input)
    state = request.app.state

    def write():
        from qembed.clustering.topic_model import TopicModel

        with state.topic_model_lock:
            # work on a fresh copy from the folder: a failure leaves the served model as it was
            tm = TopicModel.load(state.topic_model_path)
            result = tm.update(body.input, encoder=encoder, propose=body.new_topics)
            tm.save(state.topic_model_path)
            state.topic_model = tm
            return result

    result = await run_in_threadpool(write)
    return topic_update_body(result, model=served_name(request))


@router.post("/v1/topics/fit", summary="Fit the served topic model on texts")
async def fit_topics(body: TopicFitRequest, request: Request) -> dict[str, Any]:
    encoder, _ = task_encoder(request, body.model, None, bound_to="the topic model")
    path = _path(request)
    _texts(request, body.input, MAX_FIT_TEXTS)
    state = request.app.state
    if state.topic_model is not None and not body.replace:
        raise InputError("the server already holds a fitted topic model; pass replace: true to replace it",
                         param="replace", code="topic_model_exists")

    def fit():
        from qembed.clustering.topic_model import TopicModel

        with state.topic_model_lock:
            tm = TopicModel.fit(encoder, body.input, method=body.method, clusters=body.clusters,
                                min_cluster_size=body.min_cluster_size, seed=body.seed,
                                outlier_quantile=float(body.outlier_quantile))
            tm.save(path)
            state.topic_model = tm
            return tm

    try:
        tm = await run_in_threadpool(fit)
    except InputError as exc:
        if exc.param == "texts":
            exc.param = "input"
            exc.message = exc.message.replace("texts[", "input[")
        raise
    return topics_body(tm, model=served_name(request))
