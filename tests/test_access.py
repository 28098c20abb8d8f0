"""API keys, /v1/auth/status, the debug endpoint and CORS, through the real server."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.mock_anthropic import MockAnthropic

KEYS = ("key-one-0123456789", "key-two-abcdefghij")
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    for key in KEYS:
        assert key not in response.text


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"authorization": f"Bearer {KEYS[0]}"}, True),
        ({"authorization": f"bearer {KEYS[1]}"}, True),
        ({"x-api-key": KEYS[1]}, True),
        ({}, False),
        ({"authorization": "Bearer wrong-key"}, False),
        ({"authorization": f"Bearer {KEYS[0]}x"}, False),
        ({"authorization": f"Basic {KEYS[0]}"}, False),
        ({"x-api-key": KEYS[0][:-1]}, False),
    ],
)
async def test_keys_guard_every_route_but_health(
    start_server: Any, headers: dict[str, str], ok: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(api_keys=KEYS)
    async with server.http() as http:
        with trio.fail_after(30):
            models = await http.get("/v1/models", headers=headers)
            status = await http.get("/v1/auth/status", headers=headers)
            missing = await http.get("/v1/nope", headers=headers)
            health = await http.get("/health")
    if ok:
        assert (models.status_code, status.status_code, missing.status_code) == (200, 200, 404)
    else:
        for response in (models, status):
            assert_401(response)
        assert missing.status_code == 404  # unknown paths say so before asking for a key
    assert health.status_code == 200
    for key in KEYS:
        assert key not in caplog.text


async def test_openai_client_with_key(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(api_keys=KEYS)
    async with (
        openai.AsyncOpenAI(base_url=server.base_url, api_key=KEYS[1], max_retries=0) as good,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="nope", max_retries=0) as bad,
    ):
        with trio.fail_after(30):
            reply = await good.chat.completions.create(model="sonnet", **CHAT)  # type: ignore[call-overload]
            with pytest.raises(openai.AuthenticationError) as caught:
                await bad.chat.completions.create(model="sonnet", **CHAT)  # type: ignore[call-overload]
    assert reply.choices[0].message.content == "Hello from the mock."
    assert caught.value.code == "invalid_api_key"
    assert len(mock.messages) == 1


SECRET = "fake-secret-value-0000"
BLANK = {
    name: ""
    for name in (
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "CLOUD_ML_REGION",
        "ANTHROPIC_VERTEX_PROJECT_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLAUDE_CONFIG_DIR",
    )
}
PROVIDERS = [
    # (environment, method, ready, variables reported)
    ({"ANTHROPIC_API_KEY": SECRET}, "anthropic_api_key", True, ["ANTHROPIC_API_KEY"]),
    (
        {"CLAUDE_CODE_OAUTH_TOKEN": SECRET},
        "claude_code_oauth_token",
        True,
        ["CLAUDE_CODE_OAUTH_TOKEN"],
    ),
    (
        {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIAFAKE",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "ANTHROPIC_API_KEY": SECRET,
        },
        "bedrock",
        True,
        ["CLAUDE_CODE_USE_BEDROCK", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    ),
    ({"CLAUDE_CODE_USE_BEDROCK": "true"}, "bedrock", False, ["CLAUDE_CODE_USE_BEDROCK"]),
    (
        {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "CLOUD_ML_REGION": "us-east5",
            "ANTHROPIC_VERTEX_PROJECT_ID": "my-project",
            "GOOGLE_APPLICATION_CREDENTIALS": f"/keys/{SECRET}.json",
        },
        "vertex",
        True,
        [
            "CLAUDE_CODE_USE_VERTEX",
            "CLOUD_ML_REGION",
            "ANTHROPIC_VERTEX_PROJECT_ID",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ],
    ),
    ({"CLAUDE_CODE_USE_VERTEX": "1"}, "vertex", False, ["CLAUDE_CODE_USE_VERTEX"]),
    ({}, "claude_cli_login", False, []),
]


@pytest.mark.parametrize(("env", "method", "ready", "found"), PROVIDERS)
async def test_auth_status_per_provider(
    start_server: Any,
    tmp_path: Any,
    env: dict[str, str],
    method: str,
    ready: bool,
    found: list[str],
) -> None:
    home = tmp_path / "status-home"
    server = await start_server(claude_env={**BLANK, "HOME": str(home), **env})
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.get("/v1/auth/status")
    assert response.status_code == 200
    claude = response.json()["claude_code_auth"]
    assert (claude["method"], claude["ready"], claude["env_vars_found"]) == (method, ready, found)
    assert bool(claude["missing"]) is not ready
    assert SECRET not in response.text
    assert "AKIAFAKE" not in response.text
    assert response.json()["server_info"]["api_key_required"] is False


async def test_auth_status_sees_a_cli_login(start_server: Any, tmp_path: Any) -> None:
    home = tmp_path / "login-home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / ".credentials.json").write_text('{"token": "' + SECRET + '"}')
    server = await start_server(claude_env={**BLANK, "HOME": str(home)}, api_keys=KEYS[:1])
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.get("/v1/auth/status", headers={"x-api-key": KEYS[0]})
    body = response.json()
    assert (body["claude_code_auth"]["method"], body["claude_code_auth"]["ready"]) == (
        "claude_cli_login",
        True,
    )
    assert body["server_info"] == {
        "api_key_required": True,
        "api_keys_configured": 1,
        "rate_limit_enabled": True,
    }
    assert SECRET not in response.text


async def test_debug_endpoint_off_by_default(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.post("/v1/debug/request", json=CHAT)
    assert response.status_code == 404


async def test_debug_endpoint_shows_the_conversion(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(debug_mode=True, rate_limit_enabled=False)
    body = {
        "model": "haiku",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    }
    async with server.http() as http:
        with trio.fail_after(30):
            good = await http.post("/v1/debug/request", json=body)
            bad = await http.post("/v1/debug/request", json={"messages": [{"role": "x"}]})
            deep = await http.post(
                "/v1/debug/request",
                content=b"[" * 100_000,
                headers={"content-type": "application/json"},
            )
    assert (deep.status_code, deep.json()["error"]["code"]) == (200, "invalid_json")
    run = good.json()["claude_run"]
    assert good.json()["valid"] is True
    assert run["model"] == "haiku"
    assert run["system_prompt"] == "Be brief."
    assert run["prompt"].endswith("three")
    assert "<assistant>\ntwo\n</assistant>" in run["prompt"]
    assert bad.json()["valid"] is False
    assert bad.json()["error"]["param"] == "messages[0].role"
    assert mock.messages == []  # nothing ran


ORIGIN = "https://app.example"


async def test_no_cors_unless_configured(http: httpx.AsyncClient) -> None:
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST"}
    with trio.fail_after(30):
        options = await http.options("/v1/chat/completions", headers=preflight)
        models = await http.get("/v1/models", headers={"origin": ORIGIN})
    assert options.status_code == 405
    assert not [h for h in options.headers if h.startswith("access-control")]
    assert not [h for h in models.headers if h.startswith("access-control")]


async def test_cors_preflight_and_headers(start_server: Any) -> None:
    server = await start_server(cors_origins=(ORIGIN,), api_keys=KEYS)
    preflight = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    async with server.http() as http:
        with trio.fail_after(30):
            ok = await http.options("/v1/chat/completions", headers=preflight)
            other = await http.options(
                "/v1/chat/completions", headers={**preflight, "origin": "https://evil.example"}
            )
            unknown = await http.options("/v1/nope", headers=preflight)
            models = await http.get(
                "/v1/models", headers={"origin": ORIGIN, "authorization": f"Bearer {KEYS[0]}"}
            )
    # A preflight carries no credentials: it is answered before the key check.
    assert ok.status_code == 204
    assert ok.content == b""
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["access-control-allow-methods"] == "POST"
    assert ok.headers["access-control-allow-headers"] == "authorization, content-type"
    assert int(ok.headers["access-control-max-age"]) > 0
    assert "access-control-allow-origin" not in other.headers
    assert unknown.status_code == 404
    assert models.status_code == 200
    assert models.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in models.headers["access-control-expose-headers"]
