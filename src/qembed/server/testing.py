"""A real server for tests: uvicorn on a free loopback port, in a background thread.

    from qembed.server.testing import running_server

    with running_server(encoder=tiny_encoder) as url:           # "http://127.0.0.1:PORT"
        client = openai.Client(base_url=url + "/v1", api_key="EMPTY")
        ...

``url.app`` is the FastAPI app (``url.app.state.encoder``, ``url.app.state.server``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Callable, Iterator

import httpx

from qembed.config import Settings
from qembed.models.encoder import Encoder


class ServerURL(str):
    """The base URL (``http://127.0.0.1:PORT``), carrying the served ``app``."""

    app: Any


@contextlib.contextmanager
def running_server(
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    *,
    wait_ready: bool = True,
    timeout: float = 120.0,
    loader: Callable[[], Encoder] | None = None,
    specs: list[Any] | None = None,
    **overrides: Any,
) -> Iterator[ServerURL]:
    """Serve :func:`~qembed.server.app.create_app` on ``127.0.0.1:<free port>``; yield its URL.

    Args:
        settings: server settings (default: ``Settings()``); ``overrides`` replace fields, e.g.
            ``running_server(encoder=enc, api_key="secret", max_queued_requests=4)``.
        encoder: a loaded encoder to serve (no loading); otherwise ``settings.model`` (or
            ``loader()``) loads in the background.
        wait_ready: wait until ``GET /health`` answers 200 before yielding (raise if loading fails).
        timeout: seconds to wait for startup and readiness.
        specs: the served models (:class:`~qembed.models.spec.ModelSpec`; default: the settings').

    On exit the server shuts down gracefully (in-flight requests finish) and the thread is joined.
    """
    import uvicorn

    from qembed.server.app import create_app

    settings = settings or Settings()
    if overrides:
        unknown = set(overrides) - set(Settings.model_fields)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = settings.model_copy(update=overrides)
    app = create_app(settings, encoder, loader=loader, specs=specs)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=settings.graceful_timeout)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"qembed-test-server-{port}", daemon=True)
    thread.start()
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.app = app
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server exited during startup (see the log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the test server did not start within {timeout:.0f}s")
            time.sleep(0.01)
        if wait_ready:
            state = app.state.server
            if not state.ready_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the model did not load within {timeout:.0f}s")
            if state.status != "ready":
                raise RuntimeError(f"the model failed to load: {state.error}")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=settings.graceful_timeout + 10)
        sock.close()


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    """Poll ``GET {url}/health`` until it answers 200 (for servers started elsewhere)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer 200 within {timeout:.0f}s")
        time.sleep(0.1)
