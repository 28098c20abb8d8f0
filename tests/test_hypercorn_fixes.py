"""The fixes at the hypercorn boundary (wrapper.hypercorn_fixes), over raw sockets.

Each test here failed on the server before the fixes: the process died, a connection stayed
open for ever, an answer was lost to a reset, or there was no cap at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.conftest import Server
from tests.mock_anthropic import MockAnthropic, Reply
from tests.raw_http import connect, exchange, get, parse, read_response, read_to_eof
from wrapper.errors import CONNECTIONS_RETRY_AFTER
from wrapper.hypercorn_fixes import upstream_drift


def test_checked_against_the_installed_hypercorn() -> None:
    # Fails after a hypercorn upgrade that changed what the fixes override or rely on.
    assert upstream_drift() == []


async def healthy(server: Server) -> None:
    responses, rest = await exchange(server.url, get("/health", "connection: close"))
    assert [r.status for r in responses] == [200]
    assert rest == b""


# Early answers (the app answers before reading the body)...
EARLY = {
    "404": (b"POST /nope", 404),
    "405": (b"PUT /v1/models", 405),
    "401": (b"POST /v1/chat/completions", 401),
}
# ...followed by bytes h11 cannot parse.
TAILS = {
    "http/1.0 body without content-length": (b" HTTP/1.0\r\n\r\n", b'{"a": 1}'),
    "bad chunk-size line": (
        b" HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
        b"ZZ\r\n",
    ),
}


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
@pytest.mark.parametrize("early", EARLY.values(), ids=EARLY.keys())
async def test_garbage_after_an_early_answer_does_not_end_the_server(
    start_server: Callable[..., Any], early: tuple[bytes, int], tail: tuple[bytes, bytes]
) -> None:
    # pgjones/hypercorn#203: hypercorn's 400 for the tail collided with the app's answer and
    # BusyResourceError ended serve() (and the test, through its nursery) within a few tries.
    server: Server = await start_server(api_keys=("sk-test-key",))
    request_line, status = early
    head, garbage = tail
    with trio.fail_after(30):
        for _ in range(10):
            stream = await connect(server.url)
            await stream.send_all(request_line + head)
            await stream.send_all(garbage)
            responses, rest = parse(await read_to_eof(stream))
            await stream.aclose()
            # The app's answer or hypercorn's 400, whichever won; never both, never empty.
            assert len(responses) == 1, (responses, rest)
            assert responses[0].status in (status, 400)
            responses[0].error()
            assert rest == b""
        await healthy(server)


IDLE_AFTER = {
    "health": get("/health"),
    "models": get("/v1/models"),
    "404": get("/nope"),
    "400 from the chat handler": (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
        b"content-type: application/json\r\ncontent-length: 1\r\n\r\n{"
    ),
}


@pytest.mark.parametrize("request_bytes", IDLE_AFTER.values(), ids=IDLE_AFTER.keys())
async def test_idle_connection_closes_after_keep_alive_timeout(
    start_server: Callable[..., Any], request_bytes: bytes
) -> None:
    # Before: the keep-alive timer was never restarted after an answer from a handler.
    server: Server = await start_server(keep_alive_timeout=0.5)
    with trio.fail_after(10):
        stream = await connect(server.url)
        async with stream:
            await stream.send_all(request_bytes)
            await read_response(stream)
            await stream.send_all(request_bytes)  # still kept alive for a next request
            await read_response(stream)
            assert await stream.receive_some() == b""  # then closed, not left open


async def test_idle_connection_closes_after_a_claude_run(
    start_server: Callable[..., Any], mock: MockAnthropic
) -> None:
    mock.default = Reply.text("hello")
    server: Server = await start_server(keep_alive_timeout=0.5)
    body = json.dumps(
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
        b"content-type: application/json\r\n"
    )
    with trio.fail_after(60):
        stream = await connect(server.url)
        async with stream:
            await stream.send_all(head + b"content-length: %d\r\n\r\n" % len(body) + body)
            response = await read_response(stream)
            assert response.status == 200
            assert await stream.receive_some() == b""


async def test_an_answer_before_the_upload_ends_arrives_whole(
    start_server: Callable[..., Any], mock: MockAnthropic
) -> None:
    # Closing with unread input sends a reset, which could eat the 413 and broke the
    # client's upload; now the server half-closes and discards the rest of the upload.
    server: Server = await start_server(max_body_bytes=1024)
    with trio.fail_after(30):
        stream = await connect(server.url)
        async with stream:
            await stream.send_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                b"content-type: application/json\r\ncontent-length: 200000\r\n\r\n"
            )
            response = await read_response(stream)
            for _ in range(100):  # the client finishes its upload, unaware
                await stream.send_all(b"x" * 2000)
                await trio.sleep(0.001)
            assert await read_to_eof(stream) == b""
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"
    assert mock.messages == []
    await healthy(server)


async def test_connections_past_the_cap_get_a_503(start_server: Callable[..., Any]) -> None:
    server: Server = await start_server(max_connections=2, keep_alive_timeout=60)
    with trio.fail_after(30):
        held = [await connect(server.url) for _ in range(2)]
        for stream in held:  # answered: each is counted by now
            await stream.send_all(get("/health"))
            assert (await read_response(stream)).status == 200
        responses, rest = await exchange(server.url, get("/health"))
        assert [r.status for r in responses] == [503]
        error = responses[0].error()
        assert error["code"] == "too_many_connections"
        assert responses[0].headers["retry-after"] == str(CONNECTIONS_RETRY_AFTER)
        assert rest == b""
        await held.pop().aclose()
        while True:  # the server sees the close a moment later
            responses, _ = await exchange(server.url, get("/health", "connection: close"))
            if responses[0].status == 200:
                break
            await trio.sleep(0.01)
        await held.pop().aclose()
