"""Upstream failures and timeouts, as the client sees them: OpenAI envelopes and frames."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import CHAT, Server, envelope_error, sse_data, sse_frames, wait_for_no_cli
from tests.mock_anthropic import MockAnthropic, Reply

UPSTREAM = [
    # (mock status, Anthropic error type, our status, our type, our code, retry-after?)
    (429, "rate_limit_error", 429, "rate_limit_error", "rate_limit_exceeded", True),
    (529, "overloaded_error", 503, "server_error", "upstream_unavailable", True),
    (500, "api_error", 503, "server_error", "upstream_unavailable", True),
    (503, "api_error", 503, "server_error", "upstream_unavailable", True),
    (401, "authentication_error", 500, "server_error", "claude_not_authenticated", False),
    (403, "permission_error", 500, "server_error", "claude_not_authenticated", False),
    (404, "not_found_error", 404, "invalid_request_error", "model_not_found", False),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("upstream", "kind", "status", "type_", "code", "retry"), UPSTREAM)
async def test_upstream_error(
    http: httpx.AsyncClient,
    mock: MockAnthropic,
    upstream: int,
    kind: str,
    status: int,
    type_: str,
    code: str,
    retry: bool,
    stream: bool,
) -> None:
    # The CLI retries some failures once without streaming: script the error twice.
    # Before the first token, a streamed request still gets the real status.
    mock.script(Reply.error(upstream, kind), Reply.error(upstream, kind))
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == status
    error = envelope_error(response.json())
    assert (error["type"], error["code"]) == (type_, code)
    assert ("retry-after" in response.headers) is retry
    if upstream in (401, 403):
        assert "not authenticated" in error["message"]
        assert "sk-ant-test" not in error["message"]
    assert await wait_for_no_cli() == []


async def test_openai_client_sees_rate_limit(server: Server, mock: MockAnthropic) -> None:
    import openai

    mock.script(Reply.error(429, "rate_limit_error"))
    async with server.client() as client:
        with trio.fail_after(30), pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"].isdigit()


async def test_broken_stream_then_retry_is_an_honest_frame(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # The upstream stream fails after two chunks; Claude Code retries without streaming
    # and gets a different answer. The client already has the partial text, so the
    # stream must end with an error, not a "stop" that passes off a broken answer.
    mock.script(
        Reply.text("one two three four", pieces=4, delay=0.05, fail_after=2),
        Reply.text("A different answer."),
    )
    with trio.fail_after(30):
        async with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            raw = (await r.aread()).decode()
    assert r.status_code == 200
    frames = [json.loads(f) for f in sse_data(raw)]
    assert [f["choices"][0]["delta"].get("content") for f in frames[:3]] == ["", "one t", "wo th"]
    error = envelope_error(frames[-1])
    assert (error["type"], error["code"]) == ("server_error", "stream_restarted")
    assert "[DONE]" not in raw
    assert [m.body["stream"] for m in mock.messages] == [True, False]


async def test_broken_stream_then_retry_non_streaming_gets_the_retry(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(
        Reply.text("one two three four", pieces=4, fail_after=2),
        Reply.text("A different answer."),
    )
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "A different answer."


async def test_unstreamed_answer_is_still_streamed(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # The first stream fails before any text; the retry's whole answer reaches the client.
    mock.script(Reply.text("lost", fail_after=0), Reply.text("Recovered answer."))
    with trio.fail_after(30):
        async with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            raw = (await r.aread()).decode()
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in sse_frames(raw))
    assert text == "Recovered answer."


async def test_timeout_non_streaming(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(timeout=2.0)
    mock.script(Reply.text("too slow", pieces=4, delay=1.0))
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 504
    assert envelope_error(response.json())["code"] == "timeout"
    assert await wait_for_no_cli() == []
    assert mock.messages[0].aborted_at is not None


async def test_timeout_mid_stream_is_a_frame(start_server: Any, mock: MockAnthropic) -> None:
    # The answer starts, then stalls (held, never released) until the deadline.
    server = await start_server(timeout=3.0)
    mock.script(Reply.text("abcdefghij", pieces=10, hold=trio.Event()))
    async with server.http() as http:
        with trio.fail_after(30):
            async with http.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
            ) as r:
                raw = (await r.aread()).decode()
    frames = [json.loads(f) for f in sse_data(raw)]
    assert frames[1]["choices"][0]["delta"]["content"] == "a"
    assert envelope_error(frames[-1])["code"] == "timeout"
    assert await wait_for_no_cli() == []


async def test_cli_not_found(start_server: Any, tmp_path: Any) -> None:
    server = await start_server(cli_path=str(tmp_path / "no-such-claude"))
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    error = envelope_error(response.json())
    assert error["code"] == "claude_cli_not_found"
