"""Pure and synchronous: the SDK's messages of one run -> events (wrapper.events).

Claude Code reports a turn twice: as raw Anthropic stream events while it streams
(``StreamEvent``, with ``include_partial_messages``), and as each whole assistant message
once it is complete (``AssistantMessage``), then a ``ResultMessage``. Deltas go out as the
stream shows them; the whole messages are the truth they are checked against:
- text Claude Code confirms but never streamed (its retry of a broken stream comes whole,
  unstreamed) goes out when confirmed; confirmed text that contradicts what was streamed
  is a ``Restarted`` event;
- a call of a client's function goes out as it streams (``CallStarted``, then its
  argument fragments), or whole when confirmed unstreamed; a call whose confirmed
  arguments differ from what was streamed, or a streamed call never confirmed, fails the
  run (``stream_restarted``): half a call cannot be taken back.
Both checks live here and nowhere else. Only the client's functions are reported as calls
(``names``; at most one with ``single``); Claude Code's own tools, and whatever its
subagents do, are not the client's business.

``whole`` lists the tool_use ids whose blocks are complete within a message that has
ended: the gate (wrapper.claude.gate) holds each refusal of a client call until then.
"""

from __future__ import annotations

import json
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    Message,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
)

from wrapper import errors, upstream
from wrapper.events import (
    Began,
    CallArguments,
    CallStarted,
    Event,
    Failed,
    Finished,
    MessageEnd,
    ReasoningDelta,
    Restarted,
    TextDelta,
    Usage,
)

# The result of a run whose structured output Claude never got right (CLI 2.1.332: after
# 5 calls that did not match the schema).
STRUCTURED_OUTPUT_FAILED = "error_max_structured_output_retries"


def restarted() -> errors.UpstreamError:
    return errors.UpstreamError(
        "The upstream stream broke during a function call and Claude Code answered again;"
        " the call already sent is invalid.",
        code="stream_restarted",
    )


class Reader:
    """One run's reader: ``feed`` each SDK message, get the events it means."""

    def __init__(self, names: frozenset[str] = frozenset(), single: bool = False) -> None:
        self.names = names
        self.single = single
        self.streamed = ""  # the text given out so far
        self.confirmed = ""  # the text of the assistant messages Claude Code confirmed
        self._thinking_streamed = False  # did the message being streamed think aloud?
        self.error_kind: str | None = None  # of a synthetic "API Error" message
        self.ending: Finished | Failed | None = None
        self._began = False
        self._started: dict[str, Any] = {}  # the usage message_start reported
        self.whole: list[str] = []  # tool_use ids the gate may now answer (drained by it)
        self._open: list[str] = []  # tool_use ids of the message being streamed
        # Calls reported: tool_use id -> its index and the argument text streamed so far.
        self._calls: dict[str, tuple[int, str]] = {}
        self._confirmed_calls: set[str] = set()
        # This message's content block index -> the tool_use id of a reported call.
        self._blocks: dict[int, str] = {}

    @property
    def ended(self) -> bool:
        return self.ending is not None

    def take_whole(self) -> list[str]:
        whole, self.whole = self.whole, []
        return whole

    def feed(self, message: Message) -> list[Event]:
        if self.ended:
            return []
        if isinstance(message, StreamEvent) and message.parent_tool_use_id is None:
            return self._event(message.event)
        if isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
            return self._assistant(message)
        if isinstance(message, ResultMessage):
            return [self._end(self._result(message))]
        return []

    def end(self) -> list[Event]:
        """The SDK's messages stopped: a run that never reported its result failed."""
        if self.ended:
            return []
        return [
            self._end(Failed(errors.UpstreamError("Claude Code ended the run without a result.")))
        ]

    def _end(self, event: Finished | Failed) -> Finished | Failed:
        self.ending = event
        return event

    def _wanted(self, name: object) -> bool:
        return name in self.names and not (self.single and self._calls)

    def _event(self, event: dict[str, Any]) -> list[Event]:
        kind = event.get("type")
        delta = event.get("delta", {})
        if kind == "message_start":
            self._blocks = {}
            self._thinking_streamed = False
            self._started = dict(event.get("message", {}).get("usage") or {})
            if not self._began:
                self._began = True
                return [Began()]
        elif kind == "message_delta":  # the message's blocks are all complete
            self.whole += self._open
            self._open = []
            usage = Usage.from_raw({**self._started, **(event.get("usage") or {})})
            return [MessageEnd(delta.get("stop_reason"), usage)]
        elif kind == "content_block_start":
            block = event.get("content_block", {})
            if block.get("type") == "tool_use":
                self._open.append(block["id"])
                if self._wanted(block["name"]):
                    index = len(self._calls)
                    self._blocks[event["index"]] = block["id"]
                    self._calls[block["id"]] = (index, "")
                    return [CallStarted(index, block["id"], block["name"])]
        elif kind == "content_block_delta":
            if delta.get("type") == "text_delta":
                self.streamed += delta["text"]
                return [TextDelta(str(delta["text"]))]
            if delta.get("type") == "thinking_delta":
                self._thinking_streamed = True
                return [ReasoningDelta(str(delta["thinking"]))]
            id_ = self._blocks.get(event.get("index", -1))
            fragment = delta.get("partial_json")
            if id_ is not None and delta.get("type") == "input_json_delta" and fragment:
                index, so_far = self._calls[id_]
                self._calls[id_] = (index, so_far + fragment)
                return [CallArguments(index, fragment)]
        return []

    def _assistant(self, message: AssistantMessage) -> list[Event]:
        if message.error is not None:  # a synthetic "API Error: ..." message
            self.error_kind = message.error
            return []
        events: list[Event] = []
        # Thinking goes out as it streams; a message's thinking that never streamed (the
        # CLI's unstreamed retry) goes out whole when confirmed. Thinking is not checked
        # against what streamed: a retry's other thinking does not void the answer.
        thinking = "".join(b.thinking for b in message.content if isinstance(b, ThinkingBlock))
        if thinking and not self._thinking_streamed:
            events.append(ReasoningDelta(thinking))
        self.confirmed += "".join(b.text for b in message.content if isinstance(b, TextBlock))
        if not self.confirmed.startswith(self.streamed):
            events.append(Restarted(self.confirmed))
        elif rest := self.confirmed[len(self.streamed) :]:
            events.append(TextDelta(rest))
        self.streamed = self.confirmed
        for block in message.content:
            if isinstance(block, ToolUseBlock):
                if block.id not in self._open:  # not streamed: the block came whole
                    self.whole.append(block.id)
                confirmed = self._confirm(block)
                if isinstance(confirmed, Failed):
                    return [*events, self._end(confirmed)]
                events += confirmed
        return events

    def _confirm(self, block: ToolUseBlock) -> list[Event] | Failed:
        if block.id in self._calls:
            index, streamed = self._calls[block.id]
            self._confirmed_calls.add(block.id)
            if not streamed and not block.input:  # the API streams an empty input as ""
                self._calls[block.id] = (index, "{}")
                return [CallArguments(index, "{}")]
            return [] if _same_json(streamed, block.input) else Failed(restarted())
        if not self._wanted(block.name):
            return []
        index = len(self._calls)
        arguments = json.dumps(block.input)
        self._calls[block.id] = (index, arguments)
        self._confirmed_calls.add(block.id)
        return [CallStarted(index, block.id, block.name), CallArguments(index, arguments)]

    def _result(self, message: ResultMessage) -> Finished | Failed:
        if message.subtype == STRUCTURED_OUTPUT_FAILED:  # Claude Code gave up asking
            return Failed(
                errors.UpstreamError(
                    "Claude did not answer in the requested format: "
                    + upstream.scrub("; ".join(message.errors or []) or message.subtype),
                    code="structured_output_failed",
                )
            )
        if message.is_error and not self._calls:  # with calls, the error is our interrupt
            detail = message.result or "; ".join(message.errors or []) or message.subtype
            return Failed(upstream.api_error(message.api_error_status, self.error_kind, detail))
        if any(id_ not in self._confirmed_calls for id_ in self._calls):
            return Failed(restarted())
        return Finished(
            stop_reason="tool_use" if self._calls else message.stop_reason,
            usage=Usage.from_raw(message.usage),
            cost_usd=message.total_cost_usd,
            session_id=message.session_id,
            structured_output=message.structured_output,
        )


def _same_json(text: str, value: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(text) == value)
    except json.JSONDecodeError:
        return False
