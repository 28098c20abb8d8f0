"""Malformed HTTP framing over raw sockets: each case an OpenAI envelope, then a close.

These are answered before the app is called (by h11's parser, through
wrapper.hypercorn_fixes), or by the app for what h11 lets through. After the whole table
the server still answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.conftest import Server
from tests.raw_http import connect, exchange, get, mutate, parse, read_to_eof

CHAT = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
)
WEBSOCKET = (
    b"GET /health HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
)
# (id, bytes, status, code); each is answered, then the connection closed (read_to_eof).
MALFORMED: list[tuple[str, bytes, int, str]] = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400, "malformed_request"),
    (
        "lowercase version",
        b"GET /health http/1.1\r\nhost: localhost\r\n\r\n",
        400,
        "malformed_request",
    ),
    ("HTTP/0.9", b"GET /health\r\n\r\n", 400, "malformed_request"),
    ("bad method", b"G@T /health HTTP/1.1\r\nhost: localhost\r\n\r\n", 400, "malformed_request"),
    (
        "non-ASCII target",
        b"GET /\xff HTTP/1.1\r\nhost: localhost\r\n\r\n",
        400,
        "malformed_request",
    ),
    ("space in header name", get("/health", "bad header: 1"), 400, "malformed_request"),
    ("header without colon", get("/health", "nocolon"), 400, "malformed_request"),
    ("NUL in header value", get("/health", "x-a: b\0c"), 400, "malformed_request"),
    ("folded first header", b"GET /health HTTP/1.1\r\n folded\r\n\r\n", 400, "malformed_request"),
    ("no Host", b"GET /health HTTP/1.1\r\n\r\n", 400, "malformed_request"),
    ("two Hosts", get("/health", "host: 127.0.0.1"), 400, "malformed_request"),
    ("content-length abc", CHAT + b"content-length: abc\r\n\r\n", 400, "malformed_request"),
    ("content-length -1", CHAT + b"content-length: -1\r\n\r\n", 400, "malformed_request"),
    (
        "conflicting content-lengths",
        CHAT + b"content-length: 1\r\ncontent-length: 2\r\n\r\nab",
        400,
        "malformed_request",
    ),
    (
        "transfer-encoding gzip",
        CHAT + b"transfer-encoding: gzip\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    ),
    (
        "two transfer-encodings",
        CHAT + b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    ),
    (
        "bad chunk size",
        CHAT + b"transfer-encoding: chunked\r\n\r\nZZZ\r\n",
        400,
        "malformed_request",
    ),
    (
        "bad chunk footer",
        CHAT + b"transfer-encoding: chunked\r\n\r\n1\r\nxy\r\n",
        400,
        "malformed_request",
    ),
    (
        "headers past MAX_HEADER_BYTES",
        b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-pad: " + b"a" * 5000,
        431,
        "headers_too_large",
    ),
    (
        "request line past MAX_HEADER_BYTES",
        b"GET /" + b"a" * 5000,
        431,
        "headers_too_large",
    ),
    (
        "websocket upgrade",
        WEBSOCKET
        + b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        400,
        "websocket_not_supported",
    ),
    ("bad websocket handshake", WEBSOCKET + b"\r\n", 400, "websocket_not_supported"),
    (
        "HTTP/1.0 body without content-length",
        b'POST /v1/chat/completions HTTP/1.0\r\n\r\n{"a": 1}',
        400,
        "malformed_request",
    ),
    # What h11 lets through, the app answers.
    (
        "chunk never sent",
        CHAT + b"transfer-encoding: chunked\r\n\r\nffff\r\n",
        408,
        "request_timeout",
    ),
    ("percent-encoded junk", get("/%ff", "connection: close"), 404, "not_found"),
    ("absolute URI", get("http://x/health", "connection: close"), 404, "not_found"),
]


@pytest.fixture
async def strict_server(start_server: Callable[..., Any]) -> Server:
    server: Server = await start_server(
        max_header_bytes=2048, read_timeout=0.5, keep_alive_timeout=0.5
    )
    return server


async def test_malformed_requests_get_envelopes(strict_server: Server) -> None:
    with trio.fail_after(60):
        for name, data, status, code in MALFORMED:
            responses, rest = await exchange(strict_server.url, data)
            assert [r.status for r in responses] == [status], name
            error = responses[0].error()
            assert error["code"] == code, name
            assert rest == b"", name
        responses, _ = await exchange(strict_server.url, get("/health", "connection: close"))
    assert [r.status for r in responses] == [200]


VALID = get("/health", "connection: close", "content-length: 0")


async def test_mutated_requests_get_envelopes_or_a_plain_close(strict_server: Server) -> None:
    # Seeded, so a failure replays. Whatever a mutation makes of the request, each error
    # answer is an envelope; a request whose headers never end is closed after
    # KEEP_ALIVE_TIMEOUT without an answer (the documented exception).
    rng = random.Random(10)
    cases = [mutate(rng, VALID) for _ in range(200)]
    limiter = trio.CapacityLimiter(20)  # at once: most cases wait out a short timeout

    async def check(data: bytes) -> None:
        async with limiter, await connect(strict_server.url) as stream:
            await stream.send_all(data)
            responses, rest = parse(await read_to_eof(stream))
        for response in responses:
            if response.status >= 400:
                response.error()
        assert rest == b"", data

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for data in cases:
                nursery.start_soon(check, data)
        responses, _ = await exchange(strict_server.url, VALID)
    assert [r.status for r in responses] == [200]
