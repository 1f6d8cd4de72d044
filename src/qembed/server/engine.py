"""The engine: what owns the model and runs its forward passes, apart from HTTP and tokenisation.

Two kinds share one interface (``submit(ids) -> Future``, ``close()``, ``alive``):

- :class:`ProcessEngine` (what ``qembed serve`` runs): the model lives in a process of its own. The
  front process (HTTP, JSON, tokenisation) sends token ids over a pipe and gets raw little-endian
  float32 rows back, so nothing in the front — however many requests it parses — competes with
  the forward passes for the interpreter lock, and the passes never wait for a JSON encoder. In
  the engine process a receiver thread reads requests while the model thread runs the
  :class:`~qembed.server.batcher.Batcher`'s passes, so the next batch is queued while the
  current one runs. When the engine process dies, every request waiting on it fails at once
  with a 503 and :attr:`ProcessEngine.on_exit` is called (the app restarts it).
- :class:`ThreadEngine`: the same batcher on a thread of this process, over an encoder already
  loaded here (tests, and applications that embed the app with their own encoder).

Wire format (one message per ``send_bytes``; integers little-endian): a request is ``b"R"``, a
``u64`` request id, a ``u32`` count ``n``, ``n`` ``u32`` lengths and the ``int32`` token ids of all
inputs back to back. A result is ``b"V"``, the request id, ``n`` and ``n x dim`` float32 values; a
failure is ``b"E"``, the request id and a UTF-8 JSON ``{"type", "message"}``. Control messages
are ``b"S"`` (finish queued work and stop), ``b"F"`` + JSON (the engine failed to load) and
``b"H"`` + JSON (loaded: the model's description, see :func:`describe`); after each forward
pass the engine reports ``b"B"`` with the pass's inputs, tokens and seconds (for ``/metrics``).
LoRA adapters (:mod:`qembed.server.adapters`): a request for one is ``b"Q"``: the header, a ``u16``
name length and the UTF-8 name, then as ``b"R"``. ``b"A"``, a request id and JSON
``{"op", "name", "path"}`` loads, unloads or lists adapters; the answer is ``b"J"`` + id + JSON (or
``b"E"``), and every front then gets ``b"N"`` + the JSON list of adapter names.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import struct
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Sequence

import numpy as np

from qembed.errors import EngineUnavailableError, QembedError
from qembed.models.spec import ModelSpec
from qembed.server.adapters import adapter_names, run_adapter_op
from qembed.server.batcher import Batcher
from qembed.server.errors import ServerClosingError
from qembed.server.memory import bound_kernel_caches

logger = logging.getLogger(__name__)


_HEAD = struct.Struct("<cQI")  # kind, request id, count
_PASS = struct.Struct("<cIId")  # b"B", inputs, tokens, seconds


class _PassReporter:
    """The batcher's metrics inside the engine process: each pass is reported to the front."""

    class _Gauge:
        def set(self, value: float) -> None:
            pass

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self.queue_depth = self._Gauge()

    def observe_batch(self, size: int, tokens: int, seconds: float = 0.0) -> None:
        self._send(_PASS.pack(b"B", size, tokens, seconds))


@contextlib.contextmanager
def _child_environment(omp_wait_policy: str | None) -> Any:
    """Environment variables the engine process starts with (OpenMP reads them at load time)."""
    saved = os.environ.get("OMP_WAIT_POLICY")
    if omp_wait_policy and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = omp_wait_policy
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
        else:
            os.environ["OMP_WAIT_POLICY"] = saved


def describe(encoder: Any) -> dict[str, Any]:
    """What the front needs to know about a loaded encoder (plain data)."""
    inputs = getattr(encoder, "inputs", None)
    return {
        "name": encoder.name,
        "dim": int(encoder.dim),
        "max_input_tokens": encoder.max_input_tokens,
        "supports_instructions": bool(encoder.supports_instructions),
        "path": str(getattr(encoder, "path", encoder.name)),
        "packed": bool(getattr(encoder, "packed", False)),
        "max_batch_tokens": getattr(encoder, "max_batch_tokens", None),
        "max_batch_size": getattr(encoder, "max_batch_size", None),
        "inputs": inputs.spec() if inputs is not None else None,
        "info": encoder.info() if callable(getattr(encoder, "info", None)) else {},
        "adapters": adapter_names(encoder),
    }


# ---------------------------------------------------------------------- wire format
def encode_request(request_id: int, ids: Sequence[Sequence[int]], adapter: str | None = None) -> bytes:
    lengths = np.fromiter((len(x) for x in ids), dtype="<u4", count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype="<i4", count=int(lengths.sum()))
    if adapter is None:
        return _HEAD.pack(b"R", request_id, len(ids)) + lengths.tobytes() + flat.tobytes()
    name = adapter.encode("utf-8")
    return (_HEAD.pack(b"Q", request_id, len(ids)) + struct.pack("<H", len(name)) + name
            + lengths.tobytes() + flat.tobytes())


def decode_request(message: bytes) -> tuple[int, list[list[int]], str | None]:
    kind, request_id, n = _HEAD.unpack_from(message)
    offset, adapter = _HEAD.size, None
    if kind == b"Q":
        (size,) = struct.unpack_from("<H", message, offset)
        adapter = bytes(message[offset + 2:offset + 2 + size]).decode("utf-8")
        offset += 2 + size
    lengths = np.frombuffer(message, dtype="<u4", count=n, offset=offset)
    flat = np.frombuffer(message, dtype="<i4", offset=offset + 4 * n).tolist()
    ids, start = [], 0
    for length in lengths.tolist():
        ids.append(flat[start:start + length])
        start += length
    return request_id, ids, adapter


def _error_message(request_id: int, exc: BaseException) -> bytes:
    payload = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, QembedError):
        payload.update(message=exc.message, status=exc.status_code, param=exc.param, code=exc.code)
    return _HEAD.pack(b"E", request_id, 0) + json.dumps(payload).encode("utf-8")


def _rebuild_error(payload: dict[str, Any]) -> Exception:
    if "status" in payload:
        error = QembedError(payload["message"], param=payload.get("param"), code=payload.get("code"))
        error.status_code = int(payload["status"])
        return error
    return RuntimeError(f"the forward pass failed: {payload['type']}: {payload['message']}")


# ---------------------------------------------------------------------- engine process
class _FrontConnections:
    """The front processes connected to a shared engine (``qembed serve --api-workers N``).

    Without ``listen`` the engine serves the one front at the other end of its pipe, as before.
    With ``listen = (address, authkey)`` the pipe goes to the supervisor (load, stop, exit) and
    each front connects to ``address`` (a Unix socket, :mod:`multiprocessing.connection`): one
    receiver thread per front, replies on that front's connection, and each pass reported to
    one front (the oldest connected), so ``/metrics`` counts it once.
    """

    def __init__(self, listen: Any, send: Callable[[bytes], None]) -> None:
        self.listen = listen
        self._send = send
        self._senders: list[Callable[[bytes], None]] = []
        self._lock = threading.Lock()
        self._listener: Any = None

    def report(self, message: bytes) -> None:
        if not self.listen:
            self._send(message)
            return
        with self._lock:
            sender = self._senders[0] if self._senders else None
        if sender is not None:
            sender(message)

    def broadcast(self, message: bytes) -> None:
        """``message`` to every front (the one at the pipe without ``listen``)."""
        if not self.listen:
            self._send(message)
            return
        with self._lock:
            senders = list(self._senders)
        for sender in senders:
            sender(message)

    def drop(self, sender: Callable[[bytes], None]) -> None:
        with self._lock:
            if sender in self._senders:
                self._senders.remove(sender)

    def start(self, info: dict[str, Any], receive: Callable[..., None]) -> None:
        if not self.listen:
            return
        from multiprocessing.connection import Listener

        address, authkey = self.listen
        self._listener = Listener(address, family="AF_UNIX", authkey=bytes(authkey), backlog=64)

        def accept() -> None:
            while True:
                try:
                    front = self._listener.accept()
                except Exception as exc:  # noqa: BLE001 - closed, or a client without the key
                    if self._listener is None:
                        return
                    logger.warning("a front could not connect: %s", exc)
                    continue
                lock = threading.Lock()
                hello = b"H" + json.dumps({**info, "pid": os.getpid()}).encode("utf-8")  # adapters now

                def send(message: bytes, front: Any = front, lock: threading.Lock = lock) -> None:
                    with lock:
                        try:
                            front.send_bytes(message)
                        except OSError:  # that front is gone; its receiver ends too
                            pass

                send(hello)
                with self._lock:
                    self._senders.append(send)
                threading.Thread(target=receive, args=(front, send, True), name="qembed-engine-front",
                                 daemon=True).start()

        threading.Thread(target=accept, name="qembed-engine-listener", daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()


def engine_main(conn: Any, spec: ModelSpec, batching: dict[str, Any]) -> None:
    """Entry point of the engine process: load ``spec`` (:func:`~qembed.models.spec.load_model`),
    announce it, then serve requests until told to stop."""
    # Signals go to the front: it drains and then stops the engine with a message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=batching.get("log_level", "WARNING"), datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s qembed-engine: %(message)s")
    started = time.perf_counter()
    logger.info("engine process %d: importing torch and loading %s", os.getpid(), spec.path)
    bound_kernel_caches()  # before the first matrix product reads them
    try:
        import torch

        from qembed.models.spec import load_model

        if spec.threads:
            torch.set_num_threads(int(spec.threads))
        encoder = load_model(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the front, which decides
        message = exc.message if isinstance(exc, QembedError) else f"{type(exc).__name__}: {exc}"
        conn.send_bytes(b"F" + json.dumps({"message": message}).encode("utf-8"))
        conn.close()
        os._exit(3)
    send_lock = threading.Lock()

    def send(message: bytes) -> None:
        with send_lock:
            try:
                conn.send_bytes(message)
            except OSError:  # the front is gone; the receive loop ends too
                pass

    fronts = _FrontConnections(batching.get("listen"), send)
    batcher = Batcher(encoder.forward_batch, encoder.dim,
                      max_batch_tokens=int(batching.get("max_batch_tokens") or encoder.max_batch_tokens),
                      max_batch_size=int(batching.get("max_batch_size") or encoder.max_batch_size),
                      max_queued_requests=1 << 30, packed=encoder.packed, max_wait=0.0,
                      linger=float(batching.get("linger", 0.0)), metrics=_PassReporter(fronts.report),
                      start=False)

    def reply(send: Callable[[bytes], None], request_id: int, n: int, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            send(_error_message(request_id, exc))
        else:
            send(_HEAD.pack(b"V", request_id, n) + np.ascontiguousarray(future.result(), dtype="<f4").tobytes())

    def receive(conn: Any = conn, send: Callable[[bytes], None] = send, front: bool = False) -> None:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):  # the front died: nobody is waiting for the results
                if front:  # one of several fronts (qembed serve --api-workers): the others go on
                    fronts.drop(send)
                    return
                os._exit(0)
            kind = message[:1]
            if kind == b"A":  # load, unload or list adapters, on a thread of its own (reads files)
                threading.Thread(target=adapter_op, args=(message, send), name="qembed-engine-adapters",
                                 daemon=True).start()
            elif kind in (b"R", b"Q"):
                request_id, ids, adapter = decode_request(message)
                try:
                    future = batcher.submit(ids, adapter)
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    send(_error_message(request_id, exc))
                    continue
                future.add_done_callback(lambda f, r=request_id, n=len(ids), s=send: reply(s, r, n, f))
            elif kind == b"S" and not front:
                fronts.close()
                batcher.stop()  # refuse new work; the loop on the main thread drains the queue
                return

    def adapter_op(message: bytes, send: Callable[[bytes], None]) -> None:
        _, request_id, _ = _HEAD.unpack_from(message)
        try:
            result = run_adapter_op(encoder, json.loads(message[_HEAD.size:]))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            send(_error_message(request_id, exc))
            return
        send(_HEAD.pack(b"J", request_id, 0) + json.dumps(result).encode("utf-8"))
        info["adapters"] = adapter_names(encoder)  # what a front connecting later is told
        fronts.broadcast(b"N" + json.dumps(info["adapters"]).encode("utf-8"))

    info = describe(encoder)
    logger.info("engine process %d: %s loaded in %.1fs", os.getpid(), encoder.name, time.perf_counter() - started)
    fronts.start(info, receive)
    send(b"H" + json.dumps(info).encode("utf-8"))
    threading.Thread(target=receive, name="qembed-engine-receiver", daemon=True).start()
    batcher.run()  # the forward passes run on the main thread until the front says stop
    send(_HEAD.pack(b"S", 0, 0))
    conn.close()


class ProcessEngine:
    """The model in a process of its own, driven over a pipe (see the module docstring).

    Args:
        spec: what the engine process loads (:class:`~qembed.models.spec.ModelSpec`, unchanged).
        max_batch_tokens, max_batch_size: the batch limits (None: the encoder's device defaults).
        on_exit: called (from a background thread) with the exit code when the process ends
            without being asked to.
        metrics: optional :class:`~qembed.server.metrics.ServerMetrics` for batch figures.
        log_level: the engine process's logging level.
        linger: see :class:`~qembed.server.batcher.Batcher`.
        listen: ``(unix socket path, key)``: the engine also takes front processes there
            (``qembed serve --api-workers N``, :mod:`qembed.server.fronts`); this pipe then only
            loads, stops and watches it.
    """

    def __init__(self, spec: ModelSpec, *, max_batch_tokens: int | None = None,
                 max_batch_size: int | None = None, on_exit: Callable[[int | None], None] | None = None,
                 metrics: Any = None, log_level: str = "WARNING", linger: float = 0.0,
                 listen: tuple[str, bytes] | None = None) -> None:
        self.spec = spec
        self.metrics = metrics
        self.batching = {"max_batch_tokens": max_batch_tokens, "max_batch_size": max_batch_size,
                         "log_level": log_level.upper(), "linger": linger, "listen": listen}
        self.on_exit = on_exit
        self.info: dict[str, Any] = {}
        self.dim = 0
        self.adapter_names: list[str] = []  # the engine's adapters, as it last said
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Future, int]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._conn: Any = None
        self._process: Any = None
        self._stopping = False
        self._alive = False
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._launched = 0.0
        self._launched_waiting = False  # launch() ran and start() has not waited for it yet

    # ------------------------------------------------------------------ lifecycle
    def launch(self) -> None:
        """Start the process without waiting: it imports and loads the model while the caller does
        its own start-up work; :meth:`start` then waits for it."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(target=engine_main, args=(child, self.spec, self.batching),
                                    name="qembed-engine", daemon=True)
        self._launched = time.perf_counter()
        with _child_environment(self.spec.omp_wait_policy):
            self._process.start()
        child.close()  # our copy: the pipe must close when the engine dies
        logger.info("engine process %s started; it loads the model", self._process.pid)
        self._conn = parent
        self._stopping = False
        self._launched_waiting = True

    def start(self, timeout: float | None = None) -> dict[str, Any]:
        """Start the process (unless :meth:`launch` did) and wait until the model is loaded, at
        most ``timeout`` seconds from the launch; returns :func:`describe`'s data.

        Raises :class:`~qembed.errors.QembedError` when the engine cannot load the model.
        """
        if not self._launched_waiting:
            self.launch()
        self._launched_waiting = False
        parent, started = self._conn, self._launched
        left = None if timeout is None else max(0.0, timeout - (time.perf_counter() - started))
        if not parent.poll(left):
            self._kill()
            raise QembedError(f"the engine did not load {self.spec.path} within {timeout:.0f}s")
        try:
            message = parent.recv_bytes()
        except (EOFError, OSError):
            code = self._join(5)
            raise QembedError(f"the engine process exited while loading the model (exit code {code})") from None
        if message[:1] == b"F":
            self._join(5)
            raise QembedError(json.loads(message[1:])["message"])
        self.info = json.loads(message[1:])
        self.dim = int(self.info["dim"])
        self.adapter_names = list(self.info.get("adapters") or [])
        facts = self.info.get("info") or {}
        logger.info("the engine is ready after %.1fs (%s, %s on %s%s)", time.perf_counter() - started,
                    self.info["name"], facts.get("dtype", "?"), facts.get("device", "?"),
                    ", compiled" if facts.get("compiled") else "")
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="qembed-engine-reader", daemon=True)
        self._reader.start()
        return self.info

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._alive

    def close(self, timeout: float | None = 60.0) -> None:
        """Finish the engine's queued work, then stop it (killed after ``timeout`` seconds)."""
        self._stopping = True
        if self._alive:
            try:
                with self._send_lock:
                    self._conn.send_bytes(_HEAD.pack(b"S", 0, 0))
            except OSError:
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
        if self._join(timeout) is None:
            self._kill()
        self._fail_pending(ServerClosingError("the server shut down before this request ran",
                                              code="shutting_down"))

    def _join(self, timeout: float | None) -> int | None:
        if self._process is None:
            return None
        self._process.join(timeout)
        return self._process.exitcode

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(10)

    # ------------------------------------------------------------------ requests
    def submit(self, ids: Sequence[Sequence[int]], adapter: str | None = None) -> Future:
        """Queue one request's token ids; the future gives its ``(n, dim)`` float32 unit rows.

        ``adapter``: the LoRA adapter the request named (``model``), where the spec serves some.
        """
        future: Future = Future()
        if not ids:
            future.set_result(np.empty((0, self.dim), dtype=np.float32))
            return future
        if not self._alive:
            raise EngineUnavailableError("the model engine is not running (restarting); retry shortly",
                                         code="engine_unavailable")
        request_id = next(self._ids)
        return self._send_pending(request_id, encode_request(request_id, ids, adapter), len(ids), future)

    def adapter_op(self, op: dict[str, Any]) -> Future:
        """Load, unload or list LoRA adapters in the engine (:func:`~qembed.server.adapters.run_adapter_op`);
        the future gives the answer once the engine has done it."""
        if not self._alive:
            raise EngineUnavailableError("the model engine is not running (restarting); retry shortly",
                                         code="engine_unavailable")
        request_id = next(self._ids)
        message = _HEAD.pack(b"A", request_id, 0) + json.dumps(op).encode("utf-8")
        future: Future = Future()
        # this front knows the new set before its caller does (the other fronts get b"N")
        future.add_done_callback(lambda f: f.exception() is None and self._adapters_now(f.result()))
        return self._send_pending(request_id, message, 0, future)

    def _adapters_now(self, result: dict[str, Any]) -> None:
        self.adapter_names = [a["name"] for a in result.get("adapters", ())]

    def _send_pending(self, request_id: int, message: bytes, n: int, future: Future) -> Future:
        with self._lock:
            self._pending[request_id] = (future, n)
        try:
            with self._send_lock:
                self._conn.send_bytes(message)
        except (OSError, ValueError):
            with self._lock:
                self._pending.pop(request_id, None)
            raise EngineUnavailableError("the model engine stopped; retry shortly",
                                         code="engine_unavailable") from None
        return future

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                break
            kind = message[:1]
            if kind == b"S":
                break
            if kind == b"B":
                if self.metrics is not None:
                    self.metrics.observe_batch(*_PASS.unpack(message)[1:])
                continue
            if kind == b"N":
                self.adapter_names = list(json.loads(message[1:]))
                continue
            _, request_id, n = _HEAD.unpack_from(message)
            with self._lock:
                entry = self._pending.pop(request_id, None)
            if entry is None:
                continue
            future = entry[0]
            try:
                if kind == b"V":
                    rows = np.frombuffer(message, dtype="<f4", offset=_HEAD.size).reshape(n, self.dim)
                    future.set_result(rows)
                elif kind == b"J":
                    future.set_result(json.loads(message[_HEAD.size:]))
                else:
                    future.set_exception(_rebuild_error(json.loads(message[_HEAD.size:])))
            except InvalidStateError:  # cancelled by its caller
                pass
        self._alive = False
        try:
            conn.close()
        except OSError:
            pass
        if self._stopping:
            return
        code = self._join(5)
        logger.error("the engine process exited unexpectedly (exit code %s)", code)
        self._fail_pending(EngineUnavailableError(
            f"the model engine exited unexpectedly (exit code {code}) while this request was in it; "
            "retry shortly", code="engine_unavailable"))
        if self.on_exit is not None:
            self.on_exit(code)

    def _fail_pending(self, exc: Exception) -> None:
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for future, _ in pending:
            try:
                future.set_exception(exc)
            except InvalidStateError:
                pass


class ThreadEngine:
    """The batcher on a thread of this process, over an encoder loaded here."""

    def __init__(self, encoder: Any, *, max_batch_tokens: int, max_batch_size: int,
                 metrics: Any = None) -> None:
        self.encoder = encoder
        self.dim = int(encoder.dim)
        self.info = describe(encoder)
        self.batcher = Batcher(encoder.forward_batch, encoder.dim, max_batch_tokens=max_batch_tokens,
                               max_batch_size=max_batch_size, max_queued_requests=1 << 30,
                               metrics=metrics,
                               packed=bool(getattr(encoder, "packed", False)))
        self.pid = os.getpid()

    @property
    def alive(self) -> bool:
        return True

    def submit(self, ids: Sequence[Sequence[int]], adapter: str | None = None) -> Future:
        return self.batcher.submit(ids, adapter)

    @property
    def adapter_names(self) -> list[str]:
        return adapter_names(self.encoder)

    def adapter_op(self, op: dict[str, Any]) -> Future:
        future: Future = Future()
        try:
            future.set_result(run_adapter_op(self.encoder, op))
        except Exception as exc:  # noqa: BLE001 - the caller's
            future.set_exception(exc)
        return future

    def close(self, timeout: float | None = 60.0) -> None:
        self.batcher.close(timeout)
