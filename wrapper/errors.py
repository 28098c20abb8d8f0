"""The project's errors: each one knows the HTTP status and OpenAI type/code it maps to.

Rules kept here:
- Everything a client can see as an error is one of these classes. Each is raised as a
  subclass, never as ``WrapperError`` itself: the class says what went wrong.
- An error does not render itself: the front door a request came in by does. A renderer
  (``Renderer``) turns an error into its body: ``openai_envelope``, OpenAI's
  ``{"error": {"message", "type", "param", "code"}}``, for the OpenAI routes and for
  everything refused before a route is known; ``anthropic_envelope``, Anthropic's
  ``{"type": "error", "error": {"type", "message"}}``, for Anthropic-shaped routes.
- Foreign exceptions (SDK, OS) are translated at the boundary that sees them
  (``wrapper.claude``), so the rest of the code only ever meets these.
- Messages never include secrets: callers pass text they built, not raw upstream output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

# Retry hints (seconds, for Retry-After) where nothing measures the wait; upstream's are
# in wrapper.upstream. A stopping server is most often being restarted (a deploy, a
# crash: contrib/wrapper.service restarts it after 2 s) and listens about a second after
# it starts. A full server frees a slot when a run ends, and runs take seconds.
SHUTDOWN_RETRY_AFTER = 5
BUSY_RETRY_AFTER = 5
# Connections turn over far faster than runs, and refusing one costs one small write:
# a retry each second finds the first free one.
CONNECTIONS_RETRY_AFTER = 1


class WrapperError(Exception):
    """Base class. Raised never directly; subclasses say which status they stand for."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.instance_code = code if code is not None else self.code
        self.retry_after = retry_after
        self.extra_headers = dict(headers or {})

    def headers(self) -> dict[str, str]:
        out = dict(self.extra_headers)
        if self.retry_after is not None:
            out["retry-after"] = str(self.retry_after)
        return out


class InvalidRequest(WrapperError):
    """Raised when the request body or a parameter is malformed; ``param`` names the field."""

    status = 400
    type = "invalid_request_error"


class BodyTooLarge(WrapperError):
    """Raised when a request body exceeds the configured size limit."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(WrapperError):
    """Raised when a client takes longer than the read timeout to send its request body."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class MalformedRequest(WrapperError):
    """Raised (by wrapper.hypercorn_fixes, for h11's parser) when a request's HTTP framing is
    unreadable: a bad request line, header or chunk. The connection closes after the answer."""

    status = 400
    type = "invalid_request_error"
    code = "malformed_request"


class HeadersTooLarge(MalformedRequest):
    """Raised when a request line and headers outgrow ``MAX_HEADER_BYTES`` before they end."""

    status = 431
    code = "headers_too_large"


class UnsupportedFraming(MalformedRequest):
    """Raised when a request uses a Transfer-Encoding other than ``chunked``."""

    status = 501
    code = "unsupported_transfer_encoding"


class NotFound(WrapperError):
    """Raised when no route matches the path, or a named resource does not exist."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    """Raised when ``GET /v1/models/{id}`` names a model this server does not offer."""

    code = "model_not_found"


class MethodNotAllowed(WrapperError):
    """Raised when the path exists but not for this method; carries the ``Allow`` header."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamRateLimited(WrapperError):
    """Raised when Anthropic's API answered 429 to Claude Code."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamUnavailable(WrapperError):
    """Raised when Anthropic's API was overloaded (529) or failed (5xx), or unreachable."""

    status = 503
    type = "server_error"
    code = "upstream_unavailable"


class UpstreamAuthError(WrapperError):
    """Raised when Anthropic refused Claude Code's credentials (401/403): a server fault."""

    status = 500
    type = "server_error"
    code = "claude_not_authenticated"


class UpstreamBadRequest(WrapperError):
    """Raised when Anthropic refused the request Claude Code built (400, 404, 413...)."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_invalid_request"


class UpstreamError(WrapperError):
    """Raised when the Claude Code run failed for another reason (CLI crash, bad output)."""

    status = 502
    type = "server_error"
    code = "claude_code_error"


class Timeout(WrapperError):
    """Raised when a Claude Code run exceeds the configured request timeout."""

    status = 504
    type = "server_error"
    code = "timeout"


class ShuttingDown(WrapperError):
    """Raised when a request is cut short because the server is stopping."""

    status = 503
    type = "server_error"
    code = "shutting_down"


class InvalidApiKey(WrapperError):
    """Raised when API keys are configured and the request has none, or a wrong one."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "www-authenticate": "Bearer"}


class RateLimited(WrapperError):
    """Raised when a client has used up its token bucket for a route class."""

    status = 429
    type = "rate_limit_exceeded"
    code = "too_many_requests"


class TooManyRuns(RateLimited):
    """Raised when a client already has its cap of Claude Code runs running or queued:
    its own excess, so a 429 for it while other clients still get slots."""

    code = "too_many_concurrent_runs"


class ServerBusy(WrapperError):
    """Raised when every Claude Code slot is taken and the wait queue is full."""

    status = 503
    type = "server_error"
    code = "server_busy"


class SessionNotFound(NotFound):
    """Raised when ``/v1/sessions/{id}`` names a session this server does not hold."""

    code = "session_not_found"


class SessionConflict(WrapperError):
    """Raised when a session cannot take the turn as it stands (its transcript vanished)."""

    status = 409
    type = "invalid_request_error"
    code = "session_conflict"


class WorkdirUnavailable(WrapperError):
    """Raised when a run's place cannot be made: the workdir is gone, full, or something
    is planted where a place's directory should be (wrapper.places)."""

    code = "workdir_unavailable"


class StoreUnavailable(WrapperError):
    """Raised when the session store (SQLite in the state directory) cannot be used."""

    code = "session_store_unavailable"


class TranscriptUnavailable(WrapperError):
    """Raised when the conversation cannot be written for Claude Code to resume."""

    code = "transcript_unavailable"


class InternalError(WrapperError):
    """What a client sees of a bug: the details go to the log, never to the client."""

    code = "internal_error"


class UnsupportedMediaType(WrapperError):
    """Raised when a POST body is not declared ``application/json`` (see wrapper.guard)."""

    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class InvalidHost(WrapperError):
    """Raised when the ``Host`` header is missing (HTTP/1.1 and later), repeated or not a host."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_host"


class HostNotAllowed(WrapperError):
    """Raised when ``Host`` names a host this server does not answer to (DNS rebinding)."""

    status = 421
    type = "invalid_request_error"
    code = "host_not_allowed"


class SessionLimitReached(WrapperError):
    """Raised when a new session would pass the server's or its API key's session cap.
    403, not 429: waiting does not help (only a delete or an expiry does), and clients
    retry 429s by themselves."""

    status = 403
    type = "invalid_request_error"
    code = "session_limit_reached"


# --- renderers: an error as the body its front door sends ---------------------------

Renderer = Callable[[WrapperError], dict[str, Any]]


def openai_envelope(error: WrapperError) -> dict[str, Any]:
    """OpenAI's error body."""
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.type,
        "param": error.param,
        "code": error.instance_code,
    }
    if isinstance(error, RateLimited):
        # The seed's clients read retry_after from the body as well as the header.
        body["retry_after"] = error.retry_after
    return {"error": body}


# Anthropic's error types by status (https://docs.claude.com/en/api/errors). Its 529 is
# our 503: the same "overloaded, retry" for a full or stopping server.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_type(status: int) -> str:
    """Anthropic's type for ``status``; other 4xx are ``invalid_request_error``, as
    Anthropic documents, and other 5xx (our 502, 501) are ``api_error``."""
    if status in ANTHROPIC_TYPES:
        return ANTHROPIC_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_envelope(error: WrapperError) -> dict[str, Any]:
    """Anthropic's error body: its type follows the status; the message is ours."""
    return {
        "type": "error",
        "error": {"type": anthropic_type(error.status), "message": error.message},
    }
