"""Several front processes over one engine per model (``qembed serve --api-workers N``), and the
process limits a server needs for many simultaneous connections.

One front process parses, validates, tokenises and answers every request; for small models it is
the limit, and a host with many cores cannot use them. With ``--api-workers N`` the process that
``qembed serve`` starts becomes a **supervisor**:

- it starts the engine process of each model (the embedding model, and the reranker when one is
  served) with a Unix socket of its own (:mod:`multiprocessing.connection`, a random key); the
  pipe between supervisor and engine carries only load, stop and exit;
- it binds the listening TCP socket once and starts ``N`` front processes that share it (the
  pattern of uvicorn's and gunicorn's workers: the kernel hands each new connection to one of the
  processes waiting in ``accept``);
- each front connects to every engine (:class:`AttachedEngine`: the same wire format as a front
  with a private engine) and serves the whole HTTP API;
- **one admission limit**: :class:`SharedAdmission` counts the requests in every front in shared
  memory, so the ``max_queued_requests + 1``-th request anywhere is answered 429 with
  ``Retry-After``;
- **one set of metrics**: the fronts and the supervisor write prometheus_client's multiprocess
  files, and ``/metrics`` on any front adds them up (each engine pass is reported to one front);
- **one health**: every front reports the engines it is connected to and the fronts' figures the
  supervisor keeps (:class:`FrontStats`); an engine that dies is seen by every front at once (503
  ``engine_unavailable`` while the supervisor restarts it, then they reconnect), and a front that
  dies is started again by the supervisor (the others keep serving meanwhile).

:func:`raise_open_files_limit` serves every ``qembed serve``: each connection is a file
descriptor, and with the usual soft limit of 1,024 a burst of 1,024 clients runs out — uvloop then
accepts the connections it cannot keep and closes them at once, so those clients read a reset
instead of an answer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.connection import wait as wait_for
from typing import Any

from qembed.errors import QembedError
from qembed.server.engine import ProcessEngine
from qembed.server.errors import QueueFullError

logger = logging.getLogger(__name__)

#: File descriptors a server keeps for itself besides its connections (engine pipes, logs,
#: libraries, the tokenizer's files); :func:`raise_open_files_limit` adds them to what it asks for.
RESERVED_FDS = 256
#: Connections a server should take at once without running out of descriptors (the 1,024-client bar).
WANTED_CONNECTIONS = 4096
#: Connections waiting to be accepted (the kernel caps it at ``net.core.somaxconn``).
BACKLOG = 4096
#: Fronts that die this many times within :data:`FRONT_RESTART_WINDOW` seconds stop the server.
FRONT_RESTART_LIMIT = 5
FRONT_RESTART_WINDOW = 60.0


# ---------------------------------------------------------------------- process limits
def raise_open_files_limit(wanted: int = WANTED_CONNECTIONS + RESERVED_FDS) -> tuple[int, int]:
    """Lift this process's soft open-files limit towards ``wanted`` (at most to the hard limit).

    Returns ``(before, after)``. Logs a warning when the hard limit keeps it below ``wanted``: the
    server then takes about ``after - 256`` simultaneous connections before new ones are dropped.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    after = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            after = target
        except (ValueError, OSError) as exc:  # pragma: no cover - refused by the system
            logger.warning("could not raise the open-files limit from %d: %s", soft, exc)
    if after != resource.RLIM_INFINITY and after < wanted:
        logger.warning("open-files limit %d (hard limit %s): about %d simultaneous connections fit; "
                       "more are dropped. Raise it with 'ulimit -n %d' (or LimitNOFILE= in a systemd unit)",
                       after, hard, max(0, after - RESERVED_FDS), wanted)
    elif after != soft:
        logger.info("open-files limit raised from %d to %d", soft, after)
    return soft, after


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), inheritable by the fronts."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        from qembed.errors import InputError

        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", param="port") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


# ---------------------------------------------------------------------- shared admission
class SharedAdmission:
    """One admission limit across front processes: each front's count in shared memory.

    The supervisor creates it (with its multiprocessing context) and hands it to every front;
    a front calls :meth:`bind` with its index, then :meth:`enter` / :meth:`leave` per request.
    When a front dies the supervisor :meth:`reset` s its count, so its requests do not hold
    places forever.
    """

    def __init__(self, ctx: Any, fronts: int, limit: int) -> None:
        self.counts = ctx.Array("i", int(fronts))
        self.limit = int(limit)
        self.index = 0

    def bind(self, index: int) -> None:
        self.index = int(index)

    def total(self) -> int:
        with self.counts.get_lock():
            return int(sum(self.counts.get_obj()))

    def enter(self) -> None:
        """Count one request of this front; :class:`QueueFullError` when the server is full."""
        counts = self.counts.get_obj()
        with self.counts.get_lock():
            total = sum(counts)
            if total >= self.limit:
                raise QueueFullError(
                    f"the server is busy: {total} requests are already queued "
                    f"(max_queued_requests={self.limit}, across every front); retry shortly",
                    code="queue_full")
            counts[self.index] += 1

    def leave(self) -> None:
        with self.counts.get_lock():
            self.counts.get_obj()[self.index] -= 1

    def mine(self) -> int:
        """Requests in this front (its part of the queue-depth gauge)."""
        return int(self.counts[self.index])

    def reset(self, index: int) -> None:
        with self.counts.get_lock():
            self.counts.get_obj()[index] = 0


class FrontStats:
    """Figures the supervisor keeps for every front's ``/health``: fronts wanted, alive and
    restarted, and engine restarts."""

    FIELDS = ("processes", "alive", "restarts", "engine_restarts")

    def __init__(self, ctx: Any, processes: int) -> None:
        self.values = ctx.Array("q", len(self.FIELDS))
        self.values[0] = int(processes)

    def add(self, name: str, amount: int = 1) -> None:
        with self.values.get_lock():
            self.values[self.FIELDS.index(name)] += amount

    def as_dict(self) -> dict[str, int]:
        with self.values.get_lock():
            return dict(zip(self.FIELDS, (int(v) for v in self.values.get_obj())))


# ---------------------------------------------------------------------- a front's engine link
class AttachedEngine(ProcessEngine):
    """An engine started by the supervisor, reached over its Unix socket by one front.

    Same interface and wire format as :class:`~qembed.server.engine.ProcessEngine`; it does not
    own the process: :meth:`close` only disconnects, and when the engine dies the front answers
    503 until it can connect to the one the supervisor starts in its place.
    """

    def __init__(self, address: str, authkey: bytes, **kwargs: Any) -> None:
        from qembed.models.spec import ModelSpec

        super().__init__(ModelSpec(path=address), **kwargs)
        self.address = address
        self.authkey = bytes(authkey)

    def launch(self) -> None:
        self._launched = time.perf_counter()
        self._stopping = False
        self._launched_waiting = True
        self._conn = None

    def start(self, timeout: float | None = None) -> dict[str, Any]:
        from multiprocessing.connection import Client

        if not self._launched_waiting:
            self.launch()
        deadline = None if timeout is None else self._launched + timeout
        while self._conn is None:
            try:
                self._conn = Client(self.address, family="AF_UNIX", authkey=self.authkey)
            except (OSError, EOFError):  # not listening yet (loading, or restarting)
                if self._stopping:
                    raise QembedError("the front is shutting down") from None
                if deadline is not None and time.perf_counter() > deadline:
                    raise QembedError(f"no engine answered at {self.address} within {timeout:.0f}s") from None
                time.sleep(0.2)
        info = super().start(None if deadline is None else max(1.0, deadline - time.perf_counter()))
        self.spec = self.spec.replace(path=str(info.get("path") or info.get("name")))
        return info

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")

    def _join(self, timeout: float | None) -> int | None:
        return None  # not ours: the supervisor sees its exit code

    def _kill(self) -> None:
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(OSError, ValueError):
            # closing the descriptor does not wake the reader blocked on it; shutting the socket does
            with socket.socket(fileno=os.dup(conn.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self, timeout: float | None = 60.0) -> None:
        """Disconnect (the engine and the other fronts go on)."""
        from qembed.server.errors import ServerClosingError

        self._stopping = True
        self._kill()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
        self._fail_pending(ServerClosingError("the server shut down before this request ran",
                                              code="shutting_down"))


# ---------------------------------------------------------------------- front process
def front_main(settings_data: dict[str, Any], index: int, sock: socket.socket, links: dict[str, tuple[str, bytes]],
               admission: SharedAdmission, stats: FrontStats, ready: Any, specs: list[Any] | None = None) -> None:
    """Entry point of front ``index``: connect to the engines, then serve HTTP on the shared socket."""
    from qembed.config import Settings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops the fronts
    logging.basicConfig(level=str(settings_data.get("log_level", "info")).upper(), datefmt="%H:%M:%S",
                        format=f"%(asctime)s %(levelname)s qembed-front-{index}: %(message)s")
    raise_open_files_limit()
    import uvicorn

    from qembed.server.app import create_app, start_engine

    settings = Settings(**settings_data)
    admission.bind(index)
    app = create_app(settings, specs=specs)
    state = app.state.server
    state.attach = links
    state.admission = admission
    state.front_stats = stats
    state.front_index = index
    try:
        start_engine(app)
    except Exception as exc:  # noqa: BLE001 - the supervisor sees the exit code and decides
        logger.error("front %d could not reach an engine: %s", index, exc)
        raise SystemExit(3) from None
    config = uvicorn.Config(app, log_level=settings.log_level.lower(), access_log=settings.access_log,
                            timeout_graceful_shutdown=settings.graceful_timeout, lifespan="on", backlog=BACKLOG)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            stats.add("alive")  # counted once it serves; the supervisor takes it off when it dies
            ready.set()

    def watch_supervisor(parent: int = os.getppid()) -> None:
        while os.getppid() == parent:  # the supervisor was killed: stop rather than linger
            time.sleep(1.0)
        logger.error("the supervisor (pid %d) is gone; front %d stops", parent, index)
        server.should_exit = True
        time.sleep(settings.graceful_timeout + 5)
        os._exit(1)

    threading.Thread(target=announce, name="qembed-front-ready", daemon=True).start()
    threading.Thread(target=watch_supervisor, name="qembed-front-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # uvicorn installs its own while serving
    server.run(sockets=[sock])


# ---------------------------------------------------------------------- supervisor
class _Front:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.ready: Any = None


class Supervisor:
    """Start the engines and ``settings.api_workers`` fronts; restart what dies; stop on a signal.

    Every engine is kept by a :class:`~qembed.server.supervisor.ModelSupervisor` (the same one a
    single-front server uses: start, restart up to the limit, ``on_fatal``), here without a front
    and listening on a Unix socket for the front processes. :meth:`run` blocks and returns the
    exit code of ``qembed serve`` (0 after a signal, 1 when an engine or the fronts cannot be kept
    running).
    """

    def __init__(self, settings: Any, *, on_ready: Any = None, specs: list[Any] | None = None) -> None:
        from qembed.models.spec import specs_from_settings
        from qembed.server.registry import ModelRegistry
        from qembed.server.supervisor import engine_threads

        self.settings = settings
        self.specs = engine_threads(list(specs) if specs is not None else specs_from_settings(settings))
        self.registry = ModelRegistry(self.specs)
        self.workers = int(settings.api_workers)
        self.on_ready = on_ready
        self.ctx = multiprocessing.get_context("spawn")
        self.dir = tempfile.mkdtemp(prefix="qembed-fronts-")
        self.authkey = os.urandom(32)
        self.supervisors: list[Any] = []
        self.links: dict[str, tuple[str, bytes]] = {}
        self.fronts = [_Front(i) for i in range(self.workers)]
        self.admission = SharedAdmission(self.ctx, self.workers, settings.max_queued_requests)
        self.stats = FrontStats(self.ctx, self.workers)
        self.sock: socket.socket | None = None
        self.stopping = False
        self.fatal: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._restarts: list[float] = []
        self._previous: dict[int, Any] = {}
        self.metrics: Any = None
        self.served_name = ""
        self.port = int(settings.port)

    @property
    def engines(self) -> dict[str, Any]:
        """The engine process of each local model, by served name."""
        return {sup.served.name: sup.served.engine for sup in self.supervisors}

    # ------------------------------------------------------------------ engines
    def _start_engines(self) -> None:
        from qembed.server.supervisor import ModelSupervisor, start_models

        for i, served in enumerate(self.registry):
            if served.spec.remote:  # an upstream endpoint: each front calls it
                continue
            link = (os.path.join(self.dir, f"engine-{i}.sock"), self.authkey)
            self.links[served.name] = link
            self.supervisors.append(ModelSupervisor(
                served, self.settings, metrics=self.metrics, listen=link, build_front=False,
                on_fatal=self._engine_failed, on_restart=lambda served: self.stats.add("engine_restarts")))
        start_models(self.supervisors)

    def _engine_failed(self, reason: str) -> None:
        if self.stopping:
            return
        self.fatal = reason
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"e")

    # ------------------------------------------------------------------ fronts
    def _start_front(self, front: _Front) -> None:
        front.ready = self.ctx.Event()
        data = self.settings.model_dump()
        front.process = self.ctx.Process(
            target=front_main, name=f"qembed-front-{front.index}",
            args=(data, front.index, self.sock, self.links, self.admission, self.stats, front.ready, self.specs))
        front.process.start()

    def _front_died(self, front: _Front) -> None:
        code = front.process.exitcode
        pid = front.process.pid
        if front.ready.is_set():
            self.stats.add("alive", -1)
        self.admission.reset(front.index)
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
        if self.stopping:
            return
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < FRONT_RESTART_WINDOW] + [now]
        if len(self._restarts) > FRONT_RESTART_LIMIT:
            self.fatal = (f"the fronts died {len(self._restarts)} times within {FRONT_RESTART_WINDOW:.0f}s "
                          f"(last: front {front.index}, exit code {code})")
            return
        logger.warning("front %d (pid %s) exited with code %s; starting it again", front.index, pid, code)
        self.stats.add("restarts")
        self._start_front(front)

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        """Metrics directory, engines, the listening socket, the fronts (blocks until all are ready)."""
        for sig in (signal.SIGINT, signal.SIGTERM):  # a stop while starting ends the start-up
            self._previous.setdefault(sig, signal.signal(sig, lambda signum, frame: self.request_stop()))
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # the fronts inherit it
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(self.dir, "metrics")
            os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        from prometheus_client import values

        # prometheus_client picks where values live when it is imported; this process imported
        # it before the directory was set (the fronts start with it set)
        values.ValueClass = values.get_value_class()
        from qembed.server.metrics import ServerMetrics

        self.metrics = ServerMetrics()  # the supervisor's own counts: engine restarts
        self._start_engines()
        default = self.registry.default("embedding")
        self.served_name = default.name if default is not None else ""
        self.sock = bind_socket(self.settings.host, self.settings.port, BACKLOG)
        self.port = self.sock.getsockname()[1]
        for front in self.fronts:
            self._start_front(front)
        deadline = time.monotonic() + self.settings.engine_start_timeout
        for front in self.fronts:
            while not front.ready.wait(0.2):
                if not front.process.is_alive():
                    raise QembedError(f"front {front.index} exited while starting (exit code "
                                      f"{front.process.exitcode}); see its log lines above")
                if time.monotonic() > deadline or self.stopping:
                    raise QembedError(f"front {front.index} did not start")

    def request_stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

    def run(self) -> int:
        """Supervise until a signal or a fatal error; then stop everything. The exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous.setdefault(sig, signal.signal(sig, lambda signum, frame: self.request_stop()))
        try:
            if self.on_ready is not None:
                self.on_ready(self)
            while not self.stopping and self.fatal is None:
                sentinels = {f.process.sentinel: f for f in self.fronts if f.process is not None}
                for ready in wait_for([*sentinels, self._wake_r], timeout=1.0):
                    if ready == self._wake_r:
                        os.read(self._wake_r, 64)
                        continue
                    front = sentinels[ready]
                    front.process.join(1)
                    self._front_died(front)
            return 1 if self.fatal else 0
        finally:
            if self.fatal:
                logger.critical("exiting: %s", self.fatal)
            self.close()

    def close(self) -> None:
        """Stop the fronts (each drains its requests), then the engines."""
        self.stopping = True
        live = [f.process for f in self.fronts if f.process is not None and f.process.is_alive()]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        for process in live:
            process.join(self.settings.graceful_timeout + 15)
            if process.is_alive():
                process.kill()
                process.join(5)
        for sup in self.supervisors:
            sup.close()
        if self.sock is not None:
            self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["AttachedEngine", "FrontStats", "SharedAdmission", "Supervisor", "bind_socket",
           "raise_open_files_limit"]
