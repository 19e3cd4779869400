"""respd's error tree, and the one place it becomes the OpenAI error envelope.

Every error a client can see is a :class:`RespdError`. Handlers never build envelopes themselves: they raise,
and :func:`envelope` turns the exception into ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from typing import Any


class RespdError(Exception):
    """Base of every client-visible error: an HTTP status plus the four envelope fields."""

    status: int = 500
    type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that go with this error (e.g. Retry-After)."""
        return {}


class InvalidRequest(RespdError):
    """400: the request body or query is wrong; ``param`` names the offending field."""

    status = 400
    type = "invalid_request_error"


class Unsupported(InvalidRequest):
    """400: a valid API feature this server cannot honour (never silently ignored)."""

    default_code = "unsupported_parameter"


class AuthenticationFailed(RespdError):
    """401: missing or wrong API key."""

    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(RespdError):
    """404: unknown id (or one that belongs to another key)."""

    status = 404
    type = "invalid_request_error"


class TooLarge(RespdError):
    """413: the body (an uploaded file) is over the configured limit; reading stopped there."""

    status = 413
    type = "invalid_request_error"
    default_code = "file_too_large"


class UnreadableFile(InvalidRequest):
    """400: a file whose text cannot be extracted (an unsupported type, a damaged or encrypted PDF, a scan)."""

    default_code = "unsupported_file"


class RateLimited(RespdError):
    """429: too many requests queued; the client should come back after ``retry_after`` seconds."""

    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamError(RespdError):
    """The model backend failed. It ends a response as ``failed``; it is rarely an HTTP status.

    ``kind`` classifies the failure for metrics and traces (``timeout``, ``connect``, ``http_503``, …).
    """

    status = 502
    type = "server_error"
    default_code = "server_error"

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class ContextTooLong(UpstreamError):
    """The upstream refused the request as longer than its model's context window (its 400 says so in the
    words of vLLM, OpenAI or llama.cpp's server); ``window`` is the window it named, if it did."""

    def __init__(self, message: str, *, window: int | None) -> None:
        super().__init__(message, kind="context_length")
        self.window = window


class ServerError(RespdError):
    """500: a bug or an unexpected fault inside respd."""


MAX_MESSAGE = 2048  # characters: a message that quotes a client's value (an id, a name) never echoes megabytes


def envelope(exc: RespdError) -> dict[str, Any]:
    """The OpenAI error body for ``exc``: all four keys, nullable ones as null."""
    message = exc.message if len(exc.message) <= MAX_MESSAGE else exc.message[: MAX_MESSAGE - 1] + "…"
    param = exc.param if exc.param is None or len(exc.param) <= MAX_MESSAGE else exc.param[: MAX_MESSAGE - 1] + "…"
    return {"error": {"message": message, "type": exc.type, "param": param, "code": exc.code}}
