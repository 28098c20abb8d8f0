"""Pure conversion between OpenAI chat requests/responses and Claude Code runs. No I/O.

OpenAI -> Claude:
- ``system`` and ``developer`` messages, in order, become the run's system prompt, followed
  by what ``tool_choice`` asks of Claude (wrapper.tools).
- The last message must come from the user, or be a function's result: it is the turn
  Claude answers, and a user's must hold some text (whitespace is not a question, and the
  API refuses whitespace-only text). In a plain conversation every message before it
  (except system/developer) is rendered into the prompt as a tagged transcript, so Claude
  sees the whole conversation even though each run starts a fresh CLI session.
- No text can forge that transcript's structure: inside a rendered prompt, anything in a
  message that reads as one of its tags (``<user>``, ``</assistant >``, ``< /USER``...)
  has its ``<`` escaped, so the only tags Claude sees are the ones rendered here. A prompt
  with no earlier turns carries no tags and is the message as sent.
- A conversation that holds function calls and results is given to Claude as real
  messages instead (``Turn.messages``, resumed as a Claude Code transcript), so each
  result reaches Claude as the ``tool_result`` of its ``tool_use``.
- Content the backend cannot take yet (images) is refused with a 400 naming the field,
  never silently dropped.

Claude -> OpenAI: the builders below produce completions and chunks; stop reasons and usage
are mapped here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from wrapper import tools
from wrapper.completions import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    PromptTokensDetails,
    ResponseMessage,
    Usage,
)
from wrapper.errors import InvalidRequest
from wrapper.schema import (
    ChatRequest,
    ImagePart,
    Message,
    ToolCall,
    ToolCallFunction,
    decode_chat_request,
)
from wrapper.tools import CallDelta, Calling, FunctionCall

SYSTEM_ROLES = frozenset({"system", "developer"})
# Roles that may end a conversation: a question, or a function's result.
LAST_ROLES = frozenset({"user", "tool", "function"})
# The start of anything that could read as one of render_prompt's tags, whatever the case
# or spacing; its "<" is escaped. Over-matching (`<user-id>`) costs one "&lt;", no meaning.
FORGED_TAG = re.compile(r"<(?=\s*/?\s*(?:conversation_history|user|assistant)\b)", re.IGNORECASE)

# Claude stop_reason -> OpenAI finish_reason. Unknown reasons map to "stop".
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@attrs.frozen
class Turn:
    """What one Claude Code run needs from a chat request."""

    prompt: str
    system_prompt: str | None
    model: str
    calling: Calling = attrs.field(factory=Calling)
    # The conversation as Anthropic messages when it holds function calls: the run
    # resumes it as a transcript and does not send ``prompt``.
    messages: tuple[dict[str, Any], ...] = ()


def _text(message: Message, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, ImagePart):
            raise InvalidRequest(
                f"Image content is not supported yet: 'messages[{index}].content[{j}]'.",
                param=f"messages[{index}].content[{j}]",
                code="unsupported_content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def conversation(request: ChatRequest) -> list[tuple[str, str]]:
    """(role, text) of each message but system/developer ones: what a history key hashes."""
    return [
        (m.role, _text(m, i)) for i, m in enumerate(request.messages) if m.role not in SYSTEM_ROLES
    ]


def to_turn(request: ChatRequest, default_model: str) -> Turn:
    """Split a chat request into system prompt, conversation and the turn to answer."""
    calling = tools.calling(request)
    system: list[str] = []
    entries: list[tuple[int, Message, str]] = []
    for index, message in enumerate(request.messages):
        text = _text(message, index)
        if message.role in SYSTEM_ROLES:
            if text:
                system.append(text)
        else:
            entries.append((index, message, text))
    last = len(request.messages) - 1
    if request.messages[last].role not in LAST_ROLES:
        raise InvalidRequest(
            f"The last message must have role 'user', got '{request.messages[last].role}':"
            f" 'messages[{last}].role'. (A 'tool' message with a function's result may"
            " end the conversation too.)",
            param=f"messages[{last}].role",
        )
    if request.messages[last].role == "user" and not entries[-1][2].strip():
        raise InvalidRequest(
            f"The last message has no text to answer: 'messages[{last}].content' is empty"
            " or only whitespace.",
            param=f"messages[{last}].content",
        )
    if calling.instruction:
        system.append(calling.instruction)
    system_prompt = "\n\n".join(system) if system else None
    model = request.model or default_model
    if tools.holds_calls(request.messages):
        messages = tools.conversation(entries)
        if messages[-1]["role"] != "user":
            raise InvalidRequest(
                f"The last message is empty: 'messages[{last}].content'.",
                param=f"messages[{last}].content",
            )
        return Turn("", system_prompt, model, calling, messages)
    *earlier, (_, _, current) = entries
    history = [(m.role, text) for _, m, text in earlier]
    return Turn(render_prompt(history, current), system_prompt, model, calling)


def render_prompt(earlier: list[tuple[str, str]], current: str) -> str:
    """The latest user message, preceded by the earlier turns when there are any."""
    if not earlier:
        return current
    lines = ["<conversation_history>"]
    for role, text in earlier:
        lines += [f"<{role}>", _escape(text), f"</{role}>"]
    lines += ["</conversation_history>", "", _escape(current)]
    return "\n".join(lines)


def _escape(text: str) -> str:
    return FORGED_TAG.sub("&lt;", text)


@attrs.frozen
class Parsed:
    """A chat request body, parsed and turned into the run it asks for."""

    request: ChatRequest
    turn: Turn
    conversation: list[tuple[str, str]]


def parse(body: bytes, default_model: str) -> Parsed:
    """The raw body -> request, turn and conversation: all the CPU work a request costs
    before it runs (the handler may do it off the event loop). Refuses bad input."""
    request = decode_chat_request(body)
    return Parsed(request, to_turn(request, default_model), conversation(request))


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def finish(stop_reason: str | None, called: bool, legacy: bool) -> str:
    """The finish_reason of an answer, given whether it carries calls for the client."""
    if called:
        return "function_call" if legacy else "tool_calls"
    reason = finish_reason(stop_reason)
    # "tool_calls" with no call in the answer would send a client looking for one.
    return "stop" if reason == "tool_calls" else reason


def usage_from(raw: dict[str, object] | None) -> Usage:
    """OpenAI usage from the result message's Anthropic usage.

    Anthropic counts cached and cache-writing input apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` is all input, with the cache hits repeated in ``cached_tokens``.
    """
    raw = raw or {}

    def count(key: str) -> int:
        value = raw.get(key)
        return value if type(value) is int else 0

    cached = count("cache_read_input_tokens")
    prompt = count("input_tokens") + count("cache_creation_input_tokens") + cached
    completion = count("output_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


@attrs.frozen
class ChunkHead:
    """What every chunk of one streamed completion repeats: id, created, model."""

    id: str
    created: int
    model: str

    def chunk(
        self, delta: Delta, finish: str | None = None, cost_usd: float | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
            cost_usd=cost_usd,
        )

    def role_chunk(self) -> ChatCompletionChunk:
        return self.chunk(Delta(role="assistant", content=""))

    def text_chunk(self, text: str) -> ChatCompletionChunk:
        return self.chunk(Delta(content=text))

    def call_chunk(self, delta: CallDelta, legacy: bool) -> ChatCompletionChunk:
        """One piece of a call, as OpenAI streams it (``function_call`` when legacy)."""
        function = DeltaFunction(name=delta.name, arguments=delta.arguments)
        if legacy:
            return self.chunk(Delta(function_call=function))
        kind = "function" if delta.id is not None else None
        call = DeltaToolCall(index=delta.index, id=delta.id, type=kind, function=function)
        return self.chunk(Delta(tool_calls=[call]))

    def final_chunk(
        self,
        stop_reason: str | None,
        cost_usd: float | None,
        *,
        called: bool = False,
        legacy: bool = False,
    ) -> ChatCompletionChunk:
        return self.chunk(Delta(), finish(stop_reason, called, legacy), cost_usd)

    def usage_chunk(self, usage: Usage, cost_usd: float | None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=usage,
            cost_usd=cost_usd,
        )

    def completion(
        self,
        text: str,
        stop_reason: str | None,
        usage: Usage,
        cost_usd: float | None,
        *,
        calls: tuple[FunctionCall, ...] = (),
        legacy: bool = False,
    ) -> ChatCompletion:
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[
                Choice(
                    index=0,
                    message=_message(text, calls, legacy),
                    finish_reason=finish(stop_reason, bool(calls), legacy),
                )
            ],
            usage=usage,
            cost_usd=cost_usd,
        )


def _message(text: str, calls: tuple[FunctionCall, ...], legacy: bool) -> ResponseMessage:
    if not calls:
        return ResponseMessage(content=text)
    content = text or None  # OpenAI sends null content beside calls when there is no text
    if legacy:
        first = calls[0]
        function = ToolCallFunction(name=first.name, arguments=first.arguments)
        return ResponseMessage(content=content, function_call=function)
    tool_calls = [
        ToolCall(id=c.id, function=ToolCallFunction(name=c.name, arguments=c.arguments))
        for c in calls
    ]
    return ResponseMessage(content=content, tool_calls=tool_calls)
