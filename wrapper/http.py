"""Small ASGI helpers: read a body under a limit, send JSON, write SSE, watch for disconnect.

Rules kept here:
- A body is read whole before the handler runs and never past ``limit`` bytes: a declared
  ``content-length`` over the limit is refused before reading anything.
- ``SSEWriter`` starts the response lazily, on its first frame, so an error that happens
  before any output (an upstream 429, a bad model) still gets its real HTTP status. A
  keep-alive comment is a frame too, so it comes only after ``interval`` seconds of
  silence and never past the request's deadline (see wrapper.handlers.chat).
- Writes to one response are serialized by a lock: the keep-alive task and the handler
  both write.
- An error's body is what its front door renders (a ``Renderer`` of wrapper.errors): the
  caller passes it, since only the caller knows which API the client speaks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from wrapper.errors import BodyTooLarge, Renderer, RequestTimeout, WrapperError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A streamed response's content type; wrapper.app counts the responses that carry it.
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class ClientGone(Exception):
    """Raised when the client disconnected before its request body was read."""


def header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in scope["headers"]:
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, within: float) -> bytes:
    """The whole body, within ``limit`` bytes and ``within`` seconds (a trickling client
    would otherwise hold its connection and a run slot for as long as it likes)."""
    declared = header(scope, "content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body is {declared} bytes; the limit is {limit} bytes.")
    with trio.move_on_after(within):
        return await _read_all(receive, limit)
    raise RequestTimeout(f"The request body did not arrive within {within:g} seconds.")


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_json(
    send: Send, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    all_headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **(headers or {}),
    }
    await send(
        {"type": "http.response.start", "status": status, "headers": _raw_headers(all_headers)}
    )
    await send({"type": "http.response.body", "body": body})


async def send_raw(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _raw_headers(headers)})
    await send({"type": "http.response.body", "body": body})


async def send_empty(send: Send, status: int, headers: dict[str, str]) -> None:
    await send_raw(send, status, b"", headers)


async def send_error(
    send: Send, error: WrapperError, headers: dict[str, str], render: Renderer
) -> None:
    await send_json(send, error.status, render(error), {**headers, **error.headers()})


class SSEWriter:
    """A ``text/event-stream`` response: frames (``data:`` lines, named by an ``event:``
    line when the API names its events), comment keep-alives, then end."""

    def __init__(self, send: Send, headers: dict[str, str]) -> None:
        self._send = send
        self._headers = {
            "content-type": SSE_CONTENT_TYPE,
            "cache-control": "no-cache",
            # nginx buffers proxied responses unless told otherwise per response.
            "x-accel-buffering": "no",
            **headers,
        }
        self._lock = trio.Lock()
        self.started = False
        self.last_write = trio.current_time()

    async def _write(self, data: bytes, more: bool = True) -> None:
        async with self._lock:
            if not self.started:
                self.started = True
                await self._send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": _raw_headers(self._headers),
                    }
                )
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
            self.last_write = trio.current_time()

    async def event(self, payload: Any, name: str | None = None) -> None:
        """One frame of ``payload`` as JSON; an ``event: name`` line first when named (the
        Responses and Messages APIs name every event)."""
        assert name is None or (name != "" and name.isprintable() and name.strip() == name), name
        data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
        await self._write(data if name is None else f"event: {name}\n".encode() + data)

    async def done(self) -> None:
        await self._write(b"data: [DONE]\n\n", more=False)

    async def end(self) -> None:
        """Close the stream without ``[DONE]`` (after an error frame)."""
        await self._write(b"", more=False)

    async def keepalive(self, interval: float, until: float) -> None:
        """Send a comment line whenever nothing was written for ``interval`` seconds, up to
        the deadline ``until`` (what follows it is the answer or its error, promptly)."""
        with trio.move_on_at(until):
            while True:
                await trio.sleep_until(self.last_write + interval)
                now = trio.current_time()
                if self.last_write + interval <= now < until:
                    await self._write(b": keep-alive\n\n")


async def watch_disconnect(receive: Receive, cancel_scope: trio.CancelScope) -> None:
    """Cancel ``cancel_scope`` when the client goes away (quart-trio's pattern)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel_scope.cancel()
            return
