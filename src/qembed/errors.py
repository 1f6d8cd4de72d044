"""Exceptions raised by qembed.

Every error a user can cause derives from :class:`QembedError`; the CLI prints its message
without a traceback and the server maps it to an OpenAI-shaped error body.
"""

from __future__ import annotations


class QembedError(Exception):
    """Base class for errors qembed reports to users."""

    #: HTTP status the server answers with for this error.
    status_code: int = 400
    #: OpenAI-style error ``type``.
    error_type: str = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InputError(QembedError, ValueError):
    """The caller passed something qembed cannot work with (empty text, wrong type, bad option)."""


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


class ModelNotFoundError(QembedError, FileNotFoundError):
    """The model is neither a local folder nor obtainable from the Hugging Face Hub."""

    status_code = 404
    error_type = "not_found_error"


class RemoteError(QembedError):
    """A remote OpenAI-compatible endpoint failed or answered with an error."""

    status_code = 502
    error_type = "api_error"


class NotFoundError(QembedError):
    """Something named by the caller (index, classifier folder, document id) does not exist."""

    status_code = 404
    error_type = "not_found_error"
