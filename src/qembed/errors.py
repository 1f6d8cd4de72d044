"""Every exception kind qembed raises, with its HTTP status and its CLI exit code.

Every error a user can meet derives from :class:`QembedError`. Each kind carries

- ``status_code``: the HTTP status the server answers with (the body is OpenAI-shaped:
  ``{"error": {"message", "type", "param", "code"}}``, ``type`` from ``error_type``);
- ``exit_code``: the exit status of the ``qembed`` command, which prints ``error: <message>`` on
  stderr: ``2`` for bad input or usage (the caller can fix the call), ``1`` for runtime failures
  (a model that cannot load, a remote endpoint that fails, a damaged index, the engine).

========================  ======  =====  ==========================================
kind                      HTTP    exit   when
========================  ======  =====  ==========================================
QembedError               500     1      a runtime failure without a more precise kind
InputError                400     2      bad text, option, file or value
InputTooLongError         400     2      an input over ``max_input_tokens``, truncation off
MissingExtraError         400     2      a feature needs an extra that is not installed
IndexExistsError          400     2      creating an index where one already is
NotFoundError             404     2      a named index, classifier folder or id does not exist
ModelNotFoundError        404     1      the model is neither a folder nor on the Hub
ModelPathError            404     2      a model path names no folder, a file, or a folder without config.json
ModelLoadError            503     1      the model exists but cannot be loaded
RemoteError               502     1      a remote OpenAI-compatible endpoint failed
CorruptIndexError         503     1      an index folder is damaged
IndexLockedError          409     1      another process writes the index; retry
AuthenticationError       401     2      missing or wrong API key
ModelNotServedError       404     2      the request names a model the server does not serve
QueueFullError            429     1      the server's queue is full; retry
NotReadyError             503     1      the model is still loading
ServerClosingError        503     1      the server is shutting down
========================  ======  =====  ==========================================
"""

from __future__ import annotations


class QembedError(Exception):
    """Base class for errors qembed reports to users (a runtime failure unless a subclass says otherwise)."""

    #: HTTP status the server answers with for this error.
    status_code: int = 500
    #: Exit status of the ``qembed`` command: 2 bad input or usage, 1 runtime failure.
    exit_code: int = 1
    #: OpenAI-style error ``type``.
    error_type: str = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# ---------------------------------------------------------------- bad input or usage (exit 2)


class InputError(QembedError, ValueError):
    """The caller passed something qembed cannot work with (empty text, wrong type, bad option)."""

    status_code = 400
    exit_code = 2
    error_type = "invalid_request_error"


class InputTooLongError(InputError):
    """An input exceeds ``max_input_tokens`` while truncation is off."""

    def __init__(self, index: int, length: int, limit: int, at_least: bool = False) -> None:
        super().__init__(
            f"input {index} has {'at least ' if at_least else ''}{length} tokens, more than the limit of {limit} "
            "(truncation is off; shorten it, raise max_input_tokens, or enable truncation)",
            param="input",
            code="input_too_long",
        )
        self.index = index
        self.length = length
        self.limit = limit


class IndexExistsError(InputError):
    """Creating an index (:meth:`~qembed.store.faiss_store.FaissStore.create`) in a folder that holds one."""


class NotFoundError(QembedError):
    """Something named by the caller (index, classifier folder, document id) does not exist."""

    status_code = 404
    exit_code = 2
    error_type = "not_found_error"


class AuthenticationError(QembedError):
    """Missing or wrong API key (the server runs with ``--api-key``)."""

    status_code = 401
    exit_code = 2
    error_type = "authentication_error"


class ModelNotServedError(QembedError):
    """The request names a model this server does not serve."""

    status_code = 404
    exit_code = 2
    error_type = "invalid_request_error"


class MissingExtraError(InputError):
    """A feature needs an optional extra that is not installed (see :mod:`qembed.extras`).

    The message is one line that names the extra: ``… needs the 'ray' extra: pip install
    'qembed[ray]' (missing: pyarrow)``. HTTP 400 with ``code: "missing_extra"``, exit 2.
    """

    def __init__(self, extra: str, feature: str, packages: list[str]) -> None:
        super().__init__(f"{feature} needs the {extra!r} extra: pip install 'qembed[{extra}]' "
                         f"(missing: {', '.join(packages)})", param=extra, code="missing_extra")
        self.extra = extra
        self.packages = packages


# ---------------------------------------------------------------- runtime failures (exit 1)


class ModelNotFoundError(QembedError, FileNotFoundError):
    """The model is neither a local folder nor obtainable from the Hugging Face Hub."""

    status_code = 404
    exit_code = 1
    error_type = "not_found_error"


class ModelPathError(ModelNotFoundError):
    """A model named by a local path that is not a model folder (missing, a file, no ``config.json``):
    a mistyped argument, so bad input (exit 2) where a Hub id that cannot be fetched is a runtime failure."""

    exit_code = 2


class ModelLoadError(QembedError):
    """The model exists but cannot be loaded (damaged weights, wrong architecture, out of memory).

    The server answers 503: it cannot serve until an operator fixes the model.
    """

    status_code = 503
    exit_code = 1
    error_type = "service_unavailable_error"


class RemoteError(QembedError):
    """A remote OpenAI-compatible endpoint (or Milvus server) failed or answered with an error."""

    status_code = 502
    exit_code = 1
    error_type = "api_error"


class CorruptIndexError(QembedError):
    """An index folder exists but cannot be read (missing or damaged files).

    HTTP 503 with ``code: "index_corrupt"``: it is neither the client's fault (so not a 4xx about
    the request) nor a bug in the server (so not a 500); the service is unavailable for this
    index until an operator restores the folder from a backup or rebuilds it. CLI exit 1.
    """

    status_code = 503
    exit_code = 1
    error_type = "service_unavailable_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="index_corrupt")


class IndexLockedError(QembedError):
    """Another process holds the index folder's writer lock (nothing was written; retry)."""

    status_code = 409
    exit_code = 1
    error_type = "conflict_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="index_locked")


class QueueFullError(QembedError):
    """The batching queue holds ``max_queued_requests`` requests already."""

    status_code = 429
    exit_code = 1
    error_type = "rate_limit_error"


class NotReadyError(QembedError):
    """The model is still loading (or failed to load)."""

    status_code = 503
    exit_code = 1
    error_type = "service_unavailable_error"


class EngineUnavailableError(QembedError):
    """The model engine process is not running (it exited and is being restarted); retry shortly."""

    status_code = 503
    exit_code = 1
    error_type = "service_unavailable_error"


class ServerClosingError(QembedError):
    """The server is shutting down and accepts no new work."""

    status_code = 503
    exit_code = 1
    error_type = "service_unavailable_error"


__all__ = [
    "AuthenticationError",
    "CorruptIndexError",
    "EngineUnavailableError",
    "IndexExistsError",
    "IndexLockedError",
    "InputError",
    "InputTooLongError",
    "ModelLoadError",
    "MissingExtraError",
    "ModelNotFoundError",
    "ModelPathError",
    "ModelNotServedError",
    "NotFoundError",
    "NotReadyError",
    "QembedError",
    "QueueFullError",
    "RemoteError",
    "ServerClosingError",
]
