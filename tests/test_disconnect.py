"""A client that goes away stops its Claude Code run at once, upstream stream included."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from tests.conftest import CHAT, Server, cli_processes, settled, transcripts, wait_for_no_cli
from tests.mock_anthropic import MockAnthropic, Reply


async def post(http: httpx.AsyncClient) -> None:
    await http.post("/v1/chat/completions", json=CHAT)


# 40 chunks, 0.1 s apart: a 4 s answer that must not run to its end.
SLOW = Reply.text("x" * 40, pieces=40, delay=0.1)


async def test_disconnect_mid_stream_aborts_upstream(
    server: Server, mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(SLOW)
    body = json.dumps({**CHAT, "stream": True}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(host, int(port))
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        await stream.send_all(request.encode() + body)
        received = b""
        while received.count(b'"content":"x"') < 3:
            received += await stream.receive_some()
        assert received.startswith(b"HTTP/1.1 200")
        assert cli_processes() != []
        gone_at = trio.current_time()
        await stream.aclose()
        left = await wait_for_no_cli(within=5)
    upstream = mock.messages[0]
    assert upstream.finished is None
    assert upstream.aborted_at is not None
    assert upstream.aborted_at - gone_at < 1.0
    assert left == []
    assert await settled(lambda: transcripts(tmp_path)) == []


async def post_then_leave(http: httpx.AsyncClient, mock: MockAnthropic, after: float) -> float:
    """Post a non-streamed request, leave ``after`` seconds into the upstream answer."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(post, http)
        await mock.request_arrived.wait()
        await trio.sleep(after)
        nursery.cancel_scope.cancel()
        return trio.current_time()


async def test_disconnect_while_waiting_aborts_upstream(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(SLOW)
    with trio.fail_after(30):
        gone_at = await post_then_leave(http, mock, after=0.3)
        left = await wait_for_no_cli(within=5)
    upstream = mock.messages[0]
    assert upstream.aborted_at is not None
    assert upstream.aborted_at - gone_at < 1.0
    assert left == []


async def test_server_keeps_serving_after_disconnects(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(SLOW)
    with trio.fail_after(30):
        await post_then_leave(http, mock, after=0)
        response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the mock."
