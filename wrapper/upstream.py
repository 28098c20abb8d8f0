"""Pure: how a failed Claude Code run maps to the project's errors. No I/O.

The CLI reports an API failure as an error ``result`` (with ``api_error_status``) rather
than an exception; wrapper.claude hands its status and text here. Statuses map as
OpenAI clients expect them: 429 stays 429, 401/403 say how to authenticate, 5xx and 529
become 503 with a retry hint. What the CLI said goes to the log whole; the client gets
it ``scrub``-bed of URLs, addresses and file paths (the mock's or a proxy's host:port, the
CLI's install path), which are the server's business.
"""

from __future__ import annotations

import logging
import re

from wrapper import errors

log = logging.getLogger(__name__)

# Anthropic's 429/529 bodies reach us without their Retry-After; these are our hints.
RATE_LIMIT_RETRY_AFTER = 30
UNAVAILABLE_RETRY_AFTER = 10
# AssistantMessage.error kinds, for results that do not carry api_error_status.
ERROR_KIND_STATUS = {
    "rate_limit": 429,
    "server_error": 503,
    "authentication_failed": 401,
    "billing_error": 403,
    "invalid_request": 400,
}


# A URL; then a host:port or bare IPv4 address; then an absolute path of two parts or more.
_INTERNAL = (
    (re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+"), "<url>"),
    (
        re.compile(
            r"\[[0-9a-fA-F:]+\](?::\d+)?"
            r"|\b(?:localhost|[\w-]+(?:\.[\w-]+)+):\d{1,5}\b"
            r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"
        ),
        "<address>",
    ),
    (re.compile(r"(?<![\w.])/[\w.@+-]+(?:/[\w.@+-]+)+/?"), "<path>"),
)


def scrub(text: str) -> str:
    """``text`` without the URLs, addresses and paths it names, cut to 300 characters."""
    for pattern, placeholder in _INTERNAL:
        text = pattern.sub(placeholder, text)
    return text[:300]


def api_error(status: int | None, error_kind: str | None, detail: str) -> errors.WrapperError:
    """The error for a run that ended with an API failure of ``status`` (or ``error_kind``)."""
    status = status or ERROR_KIND_STATUS.get(error_kind or "")
    log.warning("Claude Code run failed (status %s): %s", status, detail)
    detail = scrub(detail)
    if status == 429:
        return errors.UpstreamRateLimited(
            f"Anthropic rate limit reached: {detail}", retry_after=RATE_LIMIT_RETRY_AFTER
        )
    if status in (401, 403):
        return errors.UpstreamAuthError(
            f"Claude Code is not authenticated (Anthropic answered {status}). Log in with"
            " 'claude' or set ANTHROPIC_API_KEY for the server."
        )
    if status == 404:
        return errors.ModelNotFound(
            f"Anthropic refused the model or resource: {detail}", param="model"
        )
    if status is not None and (status >= 500 or status == 529):
        return errors.UpstreamUnavailable(
            f"Anthropic is unavailable ({status}): {detail}", retry_after=UNAVAILABLE_RETRY_AFTER
        )
    if status is not None and 400 <= status < 500:
        return errors.UpstreamBadRequest(f"Anthropic refused the request ({status}): {detail}")
    return errors.UpstreamError(f"Claude Code run failed: {detail}")
