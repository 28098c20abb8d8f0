"""Raw-socket HTTP for tests of what no well-behaved client sends: bytes out, responses back.

``parse`` reads responses that carry ``content-length`` (every answer of this server that is
not streamed); what it cannot read is left in ``rest`` for the test to judge. ``mutate``
makes bytes no client sends out of a good request.
"""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import trio

from tests.conftest import envelope_error


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The ``error`` object of an OpenAI envelope; fails unless that is exactly the body."""
        assert self.headers.get("content-type") == "application/json", self
        error = envelope_error(json.loads(self.body))
        assert error["type"] == "invalid_request_error" or self.status >= 500, error
        return error


def parse(raw: bytes) -> tuple[list[Response], bytes]:
    """The complete responses at the start of ``raw``, and what follows them."""
    responses = []
    while b"\r\n\r\n" in raw:
        head, rest = raw.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "-1"))
        if length < 0 or len(rest) < length:
            break
        responses.append(Response(int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return responses, raw


async def connect(url: str) -> trio.SocketStream:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    """Everything until the server closes. A reset fails the test: it can eat an answer."""
    received = b""
    while chunk := await stream.receive_some():
        received += chunk
    return received


async def read_response(stream: trio.SocketStream) -> Response:
    """One whole response, leaving the connection open."""
    received = b""
    while not (responses := parse(received)[0]):
        chunk = await stream.receive_some()
        assert chunk, received
        received += chunk
    return responses[0]


async def exchange(url: str, data: bytes) -> tuple[list[Response], bytes]:
    """Send ``data`` on a fresh connection; the responses, and any unparsed rest, until EOF."""
    stream = await connect(url)
    async with stream:
        await stream.send_all(data)
        return parse(await read_to_eof(stream))


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode()


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few bytes replaced, inserted or deleted."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out))
        action = rng.choice(("replace", "insert", "delete"))
        if action == "replace":
            out[at] = rng.choice(b"\0\r\n :\x7f\xff\tA/")
        elif action == "insert":
            out.insert(at, rng.randrange(256))
        else:
            del out[at]
    return bytes(out)
