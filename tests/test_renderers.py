"""wrapper.errors: each front door renders errors its own way.

The renderers are pure, so their cases are tables; which renderer a response gets is the
matched route's, checked through the real server on a route added for the test.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.conftest import Server, check_envelope
from wrapper import errors
from wrapper import server as server_module
from wrapper.app import Request, Route
from wrapper.config import Config
from wrapper.errors import anthropic_envelope, openai_envelope
from wrapper.handlers import routes

# Anthropic's documented error types (https://docs.claude.com/en/api/errors).
ANTHROPIC_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
}


def _classes(base: type[errors.WrapperError]) -> list[type[errors.WrapperError]]:
    return [c for sub in base.__subclasses__() for c in (sub, *_classes(sub))]


@pytest.mark.parametrize(
    ("error", "body"),
    [
        (
            errors.InvalidRequest("Bad 'n'.", param="n"),
            {"message": "Bad 'n'.", "type": "invalid_request_error", "param": "n", "code": None},
        ),
        (
            errors.ModelNotFound("No such model.", param="model"),
            {
                "message": "No such model.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            },
        ),
        (
            errors.InternalError("Internal server error."),
            {
                "message": "Internal server error.",
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            },
        ),
        # The seed's body: retry_after in the body as well as the header.
        (
            errors.RateLimited("Slow down.", retry_after=7),
            {
                "message": "Slow down.",
                "type": "rate_limit_exceeded",
                "param": None,
                "code": "too_many_requests",
                "retry_after": 7,
            },
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, errors.WrapperError) else "",
)
def test_openai_envelope(error: errors.WrapperError, body: dict[str, Any]) -> None:
    assert openai_envelope(error) == {"error": body}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.InvalidRequest("x"), "invalid_request_error"),
        (errors.UnsupportedMediaType("x"), "invalid_request_error"),  # 415: "other 4xx"
        (errors.SessionConflict("x"), "invalid_request_error"),  # 409
        (errors.InvalidApiKey("x"), "authentication_error"),
        (errors.SessionLimitReached("x"), "permission_error"),
        (errors.SessionNotFound("x"), "not_found_error"),
        (errors.BodyTooLarge("x"), "request_too_large"),
        (errors.RateLimited("x", retry_after=1), "rate_limit_error"),
        (errors.UpstreamRateLimited("x"), "rate_limit_error"),
        (errors.InternalError("x"), "api_error"),
        (errors.UpstreamError("x"), "api_error"),  # 502: "other 5xx"
        (errors.ServerBusy("x"), "overloaded_error"),
        (errors.ShuttingDown("x"), "overloaded_error"),
        (errors.Timeout("x"), "timeout_error"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, errors.WrapperError) else v,
)
def test_anthropic_envelope(error: errors.WrapperError, kind: str) -> None:
    assert anthropic_envelope(error) == {"type": "error", "error": {"type": kind, "message": "x"}}


@pytest.mark.parametrize("cls", _classes(errors.WrapperError), ids=lambda c: c.__name__)
def test_every_error_has_an_anthropic_type(cls: type[errors.WrapperError]) -> None:
    assert errors.anthropic_type(cls.status) in ANTHROPIC_TYPES


# --- the door is the route's, through the real server -------------------------------


async def _refuse(request: Request) -> None:
    raise errors.InvalidRequest("The test route refuses everything.", param="x")


async def _crash(request: Request) -> None:
    raise RuntimeError("a bug")


def _with_test_routes(config: Config, **services: Any) -> list[Route]:
    return [
        *routes(config, **services),
        Route("POST", "/test/anthropic", _refuse, render=anthropic_envelope),
        Route("POST", "/test/anthropic/crash", _crash, render=anthropic_envelope),
        Route("POST", "/test/openai/crash", _crash),
    ]


@pytest.fixture
async def doors(start_server: Any, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setattr(server_module, "routes", _with_test_routes)
    server: Server = await start_server(api_keys=("sk-door",))
    return server


KEY = {"authorization": "Bearer sk-door"}
JSON = {"content-type": "application/json"}


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    """Assert ``response`` is exactly Anthropic's error body; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"type": "error", "error": {"type": kind, "message": body["error"]["message"]}}
    assert body["error"]["message"]
    return str(body["error"]["message"])


async def test_a_route_renders_its_errors_in_its_door_s_shape(doors: Server) -> None:
    async with doors.http() as http:
        with trio.fail_after(30):
            refused = await http.post("/test/anthropic", json={}, headers=KEY)
            crashed = await http.post("/test/anthropic/crash", json={}, headers=KEY)
            no_key = await http.post("/test/anthropic", json={})
            not_json = await http.post("/test/anthropic", content=b"x", headers=KEY)
            openai_crash = await http.post("/test/openai/crash", json={}, headers=KEY)
            chat = await http.post("/v1/chat/completions", json={}, headers=KEY)
    assert anthropic_error(refused, 400, "invalid_request_error").startswith("The test route")
    assert anthropic_error(crashed, 500, "api_error") == "Internal server error."
    # Refused after routing, before the handler: still the route's shape.
    anthropic_error(no_key, 401, "authentication_error")
    assert no_key.headers["www-authenticate"] == "Bearer"
    anthropic_error(not_json, 415, "invalid_request_error")
    check_envelope(openai_crash, 500, code="internal_error", error_type="server_error")
    check_envelope(chat, 400, code=None, param="messages")


async def test_errors_before_routing_are_openai_envelopes(doors: Server) -> None:
    async with doors.http() as http:
        with trio.fail_after(30):
            unknown = await http.post("/test/anthropic/nothing", json={}, headers=KEY)
            wrong_method = await http.get("/test/anthropic", headers=KEY)
            bad_host = await http.post(
                "/test/anthropic", json={}, headers={**KEY, **JSON, "host": "evil.example"}
            )
    check_envelope(unknown, 404, code="not_found")
    check_envelope(wrong_method, 405, code="method_not_allowed")
    check_envelope(bad_host, 421, code="host_not_allowed")
