"""A mock of Anthropic's Messages API for driving the real Claude Code CLI offline.

It is a small ASGI app served by hypercorn's trio worker on 127.0.0.1, port 0. Tests
queue replies (``mock.script(...)``); each ``POST /v1/messages`` takes the next one, or the
default reply when the queue is empty. Every request is recorded (path, headers, JSON
body), and every streamed reply records whether the client aborted it and when, so a test
can prove that a disconnect reached the upstream stream.

Rules it keeps:
- Replies are deterministic: the text is split into the given chunks, sent one SSE event
  each, with an optional delay between them (to prove streaming is not buffered). A reply
  may be held open before its end until a test sets its ``hold`` event, so a test can act
  while an answer is surely in progress rather than guess how long one takes.
- A reply may also call tools (``Reply.tool_calls``): each ``tool_use`` block follows the
  text, its input streamed as ``input_json_delta`` fragments, and ``stop_reason`` is
  ``tool_use``, as the API does.
- It speaks the event sequence the CLI expects: message_start, content_block_start,
  content_block_delta*, content_block_stop, message_delta (stop_reason, usage),
  message_stop. Errors are Anthropic error bodies with the chosen status.
- Structured output: a request that offers Claude Code's ``StructuredOutput`` tool gets,
  by default, a call of it with an instance of its input schema (``instance``); a scripted
  reply answers as scripted (``Reply.structured(value)`` calls it with ``value``).
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


# The tool Claude Code offers for structured output (its --json-schema).
STRUCTURED_OUTPUT = "StructuredOutput"


@attrs.frozen
class ToolUse:
    """One ``tool_use`` block: its input is sent as ``pieces`` ``input_json_delta`` events."""

    name: str
    input: Any  # None: for StructuredOutput, an instance of the schema offered
    id: str = "toolu_mock_1"
    pieces: int = 3

    @property
    def fragments(self) -> list[str]:
        text = json.dumps(self.input)
        size = max(1, math.ceil(len(text) / self.pieces))
        return [text[i : i + size] for i in range(0, len(text), size)]


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
    # Send an SSE ``error`` event (Anthropic's mid-stream overload) after this many deltas
    # (text chunks, then argument fragments).
    fail_after: int | None = None
    tool_uses: tuple[ToolUse, ...] = ()
    # Seconds before the answer (its status) starts: a slow API, or one that fails slowly.
    wait: float = 0.0
    # Thinking pieces, sent (as a thinking block before the text) only when the request
    # turns thinking on, as the API does.
    thinking: tuple[str, ...] = ()
    # Set by the test: the answer ends (message_delta, message_stop) only once it is.
    hold: trio.Event | None = None

    @classmethod
    def text(cls, text: str, *, pieces: int = 1, delay: float = 0.0, **kw: Any) -> Reply:
        size = max(1, math.ceil(len(text) / pieces))
        chunks = tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)
        return cls(chunks=chunks, delay=delay, **kw)

    @classmethod
    def tool_calls(cls, *calls: ToolUse, text: str = "", **kw: Any) -> Reply:
        """Claude calling tools, after an optional text block (no text block when empty)."""
        chunks = (text,) if text else ()
        return cls(chunks=chunks, tool_uses=calls, stop_reason="tool_use", **kw)

    @classmethod
    def structured(cls, value: Any = None, **kw: Any) -> Reply:
        """Claude answering through Claude Code's ``StructuredOutput`` tool with ``value``
        (None: an instance of the schema the request offers it)."""
        return cls.tool_calls(ToolUse(STRUCTURED_OUTPUT, value), **kw)

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
    # Content deltas sent so far (text chunks, then argument fragments).
    deltas: int = 0

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

    @property
    def turns(self) -> list[tuple[str, str]]:
        """(role, text) of each user and assistant message, as Claude received them."""
        return [
            (m["role"], _text_of(m["content"]))
            for m in self.body["messages"]
            if m["role"] in ("user", "assistant")
        ]

    @property
    def tool_names(self) -> list[str]:
        """The names in the request's ``tools`` array: what Claude may call."""
        return [t["name"] for t in self.body.get("tools", [])]

    def blocks(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every content block of type ``kind`` in the messages, with its message's role."""
        return [
            (m["role"], b)
            for m in self.body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == kind
        ]

    def tool_result(self, tool_use_id: str) -> tuple[str, bool]:
        """The content of the tool_result answering ``tool_use_id``, and its is_error flag."""
        for _, block in self.blocks("tool_result"):
            if block["tool_use_id"] == tool_use_id:
                content = block["content"]
                if isinstance(content, list):
                    content = "\n".join(c.get("text", "") for c in content)
                return str(content), bool(block.get("is_error"))
        raise AssertionError(f"no tool_result for {tool_use_id}")


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
        reply = self.queue.popleft() if self.queue else _default(self.default, record)
        reply = _with_instances(reply, record)
        await trio.sleep(reply.wait)
        if reply.status != 200:
            await _send_error(send, reply)
            return
        reply = _within_max_tokens(reply, record)
        if not record.body.get("stream"):
            await _send_message(send, reply, record)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_abort, receive, record, nursery.cancel_scope)
            await _send_stream(send, reply, record)
            nursery.cancel_scope.cancel()


def _structured_schema(record: Recorded) -> dict[str, Any] | None:
    for tool in record.body.get("tools", []):
        if tool.get("name") == STRUCTURED_OUTPUT:
            return dict(tool["input_schema"])
    return None


def _default(reply: Reply, record: Recorded) -> Reply:
    """The default reply; a structured answer when the request asks for one."""
    return Reply.structured() if _structured_schema(record) is not None else reply


def _with_instances(reply: Reply, record: Recorded) -> Reply:
    """``reply`` with each StructuredOutput call's missing input made from the schema."""
    schema = _structured_schema(record)
    if schema is None:
        return reply
    uses = tuple(
        attrs.evolve(t, input=instance(schema, schema))
        if t.name == STRUCTURED_OUTPUT and t.input is None
        else t
        for t in reply.tool_uses
    )
    return attrs.evolve(reply, tool_uses=uses)


def instance(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value that follows ``schema`` (the common keywords; local ``$ref`` into ``root``)."""
    if "$ref" in schema:
        target: Any = root
        for step in schema["$ref"].lstrip("#/").split("/"):
            target = target[step] if step else target
        return instance(target, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance(schema[key][0], root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged |= part
        return instance(merged, root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: instance(sub, root) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items", {})
        return [instance(items, root) for _ in range(schema.get("minItems", 1))]
    values = {"string": "mock", "integer": 1, "number": 1.5, "boolean": True, "null": None}
    return values[kind]


async def _watch_abort(receive: Receive, record: Recorded, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    # hypercorn also reports a disconnect once a response is complete: not an abort.
    if record.finished is None:
        record.aborted_at = trio.current_time()
    scope.cancel()


def _within_max_tokens(reply: Reply, record: Recorded) -> Reply:
    """The answer the API gives within the request's ``max_tokens``, counting each text
    chunk and thinking piece as one token: cut there, with ``stop_reason: max_tokens``."""
    limit = record.body.get("max_tokens")
    thinking = len(reply.thinking) if thinks(reply, record) else 0
    if not isinstance(limit, int) or thinking + len(reply.chunks) <= limit:
        return reply
    kept = max(0, limit - thinking)
    return attrs.evolve(
        reply,
        chunks=reply.chunks[:kept],
        thinking=reply.thinking[:limit],
        stop_reason="max_tokens",
        output_tokens=limit,
        tool_uses=(),
    )


# What the mock signs its thinking with (the API's signature is opaque to clients).
SIGNATURE = "mock-signature"


def thinks(reply: Reply, record: Recorded) -> bool:
    """Whether the answer carries thinking: scripted, and asked for by the request."""
    thinking = record.body.get("thinking") or {}
    return bool(reply.thinking) and thinking.get("type") in ("enabled", "adaptive")


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
    if reply.hold is not None:
        await reply.hold.wait()
    message = _message(reply, record)
    message["content"] = [{"type": "text", "text": "".join(reply.chunks)}] if reply.chunks else []
    if thinks(reply, record):
        thought = {"type": "thinking", "thinking": "".join(reply.thinking), "signature": SIGNATURE}
        message["content"].insert(0, thought)
    message["content"] += [
        {"type": "tool_use", "id": t.id, "name": t.name, "input": t.input} for t in reply.tool_uses
    ]
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

    async def emit(event: dict[str, Any]) -> None:
        await send({"type": "http.response.body", "body": _sse(event), "more_body": True})

    await emit({"type": "message_start", "message": _message(reply, record)})
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thinks(reply, record):
        thinking_deltas = [{"type": "thinking_delta", "thinking": t} for t in reply.thinking]
        thinking_deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, thinking_deltas))
    if reply.chunks:
        text_deltas = [{"type": "text_delta", "text": chunk} for chunk in reply.chunks]
        blocks.append(({"type": "text", "text": ""}, text_deltas))
    for tool in reply.tool_uses:
        json_deltas = [{"type": "input_json_delta", "partial_json": f} for f in tool.fragments]
        blocks.append(
            ({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}, json_deltas)
        )
    for index, (block, deltas) in enumerate(blocks):
        for position, delta in enumerate(deltas):
            if record.deltas == reply.fail_after:
                # Failing at a block's first delta fails before the block starts.
                error = {"type": "overloaded_error", "message": "Overloaded"}
                await emit({"type": "error", "error": error})
                record.finished = trio.current_time()
                await send({"type": "http.response.body", "body": b""})
                return
            if position == 0:
                start = {"type": "content_block_start", "index": index, "content_block": block}
                await emit(start)
            if reply.delay:
                await trio.sleep(reply.delay)
            await emit({"type": "content_block_delta", "index": index, "delta": delta})
            record.deltas += 1
        await emit({"type": "content_block_stop", "index": index})
    if reply.hold is not None:
        await reply.hold.wait()
    await emit(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        }
    )
    await emit({"type": "message_stop"})
    record.finished = trio.current_time()
    await send({"type": "http.response.body", "body": b""})
