"""A mock of Anthropic's Messages API for driving the real Claude Code CLI offline.

It is a small ASGI app served by hypercorn's trio worker on 127.0.0.1, port 0. Tests
queue replies (``mock.script(...)``); each ``POST /v1/messages`` takes the next one, or the
default reply when the queue is empty. Every request is recorded (path, headers, JSON
body), and every streamed reply records whether the client aborted it and when, so a test
can prove that a disconnect reached the upstream stream.

Rules it keeps:
- Replies are deterministic: the text is split into the given chunks, sent one SSE event
  each, with an optional delay between them (to prove streaming is not buffered).
- It speaks the event sequence the CLI expects: message_start, content_block_start,
  content_block_delta*, content_block_stop, message_delta (stop_reason, usage),
  message_stop. Errors are Anthropic error bodies with the chosen status.
- Anything that is not ``POST /v1/messages`` (the CLI's ``HEAD /`` probes) gets 200 empty.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@attrs.frozen
class Reply:
    """One scripted answer: text chunks, or an error status with an Anthropic error type."""

    chunks: tuple[str, ...] = ("Hello", " from", " the", " mock", ".")
    delay: float = 0.0
    stop_reason: str = "end_turn"
    status: int = 200
    error_type: str = "api_error"
    headers: tuple[tuple[str, str], ...] = ()
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read_tokens: int = 0
    # Send an SSE ``error`` event (Anthropic's mid-stream overload) after this many chunks.
    fail_after: int | None = None

    @classmethod
    def text(cls, text: str, *, pieces: int = 1, delay: float = 0.0, **kw: Any) -> Reply:
        size = max(1, math.ceil(len(text) / pieces))
        chunks = tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)
        return cls(chunks=chunks, delay=delay, **kw)

    @classmethod
    def error(cls, status: int, error_type: str, **kw: Any) -> Reply:
        return cls(status=status, error_type=error_type, **kw)


@attrs.define
class Recorded:
    """What the mock received for one request, and how its streamed reply ended."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    started: float = 0.0
    finished: float | None = None
    aborted_at: float | None = None

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, list):
            return "\n".join(b.get("text", "") for b in system)
        return str(system)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.body["messages"]):
            if message["role"] == "user":
                return _text_of(message["content"])
        return ""

    @property
    def all_text(self) -> str:
        return "\n".join(_text_of(m["content"]) for m in self.body["messages"])


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))


@attrs.define
class MockAnthropic:
    """The mock's state: the reply queue, the default reply and the request record."""

    default: Reply = Reply()
    queue: deque[Reply] = attrs.field(factory=deque)
    requests: list[Recorded] = attrs.field(factory=list)
    url: str = ""
    request_arrived: trio.Event = attrs.field(factory=trio.Event)

    def script(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    @property
    def messages(self) -> list[Recorded]:
        """The ``POST /v1/messages`` requests, in arrival order."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.1
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, self.app, config)  # type: ignore[arg-type]
            self.url = binds[0]
            task_status.started(self.url)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record = Recorded(
            scope["method"],
            scope["path"],
            headers,
            json.loads(body) if body else None,
            started=trio.current_time(),
        )
        self.requests.append(record)
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.request_arrived.set()
        self.request_arrived = trio.Event()
        reply = self.queue.popleft() if self.queue else self.default
        if reply.status != 200:
            await _send_error(send, reply)
            return
        if not record.body.get("stream"):
            await _send_message(send, reply, record)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_abort, receive, record, nursery.cancel_scope)
            await _send_stream(send, reply, record)
            nursery.cancel_scope.cancel()


async def _watch_abort(receive: Receive, record: Recorded, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    # hypercorn also reports a disconnect once a response is complete: not an abort.
    if record.finished is None:
        record.aborted_at = trio.current_time()
    scope.cancel()


async def _send_error(send: Send, reply: Reply) -> None:
    payload = {"type": "error", "error": {"type": reply.error_type, "message": "mock error"}}
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _message(reply: Reply, record: Recorded) -> dict[str, Any]:
    return {
        "id": f"msg_mock_{len(record.headers)}",
        "type": "message",
        "role": "assistant",
        "model": record.body.get("model", "claude-mock"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": 1,
            "cache_read_input_tokens": reply.cache_read_tokens,
            "cache_creation_input_tokens": 0,
        },
    }


async def _send_message(send: Send, reply: Reply, record: Recorded) -> None:
    """A non-streaming answer (the CLI falls back to one after some stream failures)."""
    message = _message(reply, record)
    message["content"] = [{"type": "text", "text": "".join(reply.chunks)}]
    message["stop_reason"] = reply.stop_reason
    message["usage"]["output_tokens"] = reply.output_tokens
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(message).encode()})
    record.finished = trio.current_time()


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _send_stream(send: Send, reply: Reply, record: Recorded) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"request-id", b"req_mock")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    message = _message(reply, record)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for event in events:
        await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
    for sent, chunk in enumerate(reply.chunks):
        if sent == reply.fail_after:
            error = {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
            }
            await send({"type": "http.response.body", "body": _sse(error), "more_body": True})
            record.finished = trio.current_time()
            await send({"type": "http.response.body", "body": b""})
            return
        if reply.delay:
            await trio.sleep(reply.delay)
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": chunk},
        }
        await send({"type": "http.response.body", "body": _sse(delta), "more_body": True})
    tail: list[dict[str, Any]] = [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
        {"type": "message_stop"},
    ]
    for event in tail:
        await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
    record.finished = trio.current_time()
    await send({"type": "http.response.body", "body": b""})
