"""Pure conversion between OpenAI chat requests/responses and Claude Code runs. No I/O.

OpenAI -> Claude:
- ``system`` and ``developer`` messages, in order, become the run's system prompt.
- The last message must come from the user: it is the turn Claude answers. Every message
  before it (except system/developer) is rendered into the prompt as a tagged transcript,
  so Claude sees the whole conversation even though each run starts a fresh CLI session.
- Content the backend cannot take yet (images, tool messages, assistant tool calls) is
  refused with a 400 naming the field, never silently dropped.

Claude -> OpenAI: the builders below produce completions and chunks; stop reasons and usage
are mapped here and nowhere else.
"""

from __future__ import annotations

import attrs

from wrapper.errors import InvalidRequest
from wrapper.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    ImagePart,
    Message,
    PromptTokensDetails,
    ResponseMessage,
    Usage,
)

SYSTEM_ROLES = frozenset({"system", "developer"})

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


def _check_supported(message: Message, index: int) -> None:
    if message.role == "tool":
        raise InvalidRequest(
            f"Tool messages are not supported yet: 'messages[{index}].role'.",
            param=f"messages[{index}].role",
            code="unsupported_role",
        )
    if message.tool_calls:
        raise InvalidRequest(
            f"Assistant tool calls are not supported yet: 'messages[{index}].tool_calls'.",
            param=f"messages[{index}].tool_calls",
            code="unsupported_content",
        )


def to_turn(request: ChatRequest, default_model: str) -> Turn:
    """Split a chat request into system prompt, rendered history and the turn to answer."""
    system: list[str] = []
    history: list[tuple[str, str]] = []
    for index, message in enumerate(request.messages):
        _check_supported(message, index)
        text = _text(message, index)
        if message.role in SYSTEM_ROLES:
            if text:
                system.append(text)
        else:
            history.append((message.role, text))
    last = len(request.messages) - 1
    if request.messages[last].role != "user":
        raise InvalidRequest(
            f"The last message must have role 'user', got '{request.messages[last].role}':"
            f" 'messages[{last}].role'.",
            param=f"messages[{last}].role",
        )
    *earlier, (_, current) = history
    return Turn(
        prompt=render_prompt(earlier, current),
        system_prompt="\n\n".join(system) if system else None,
        model=request.model or default_model,
    )


def render_prompt(earlier: list[tuple[str, str]], current: str) -> str:
    """The latest user message, preceded by the earlier turns when there are any."""
    if not earlier:
        return current
    lines = ["<conversation_history>"]
    for role, text in earlier:
        lines += [f"<{role}>", text, f"</{role}>"]
    lines += ["</conversation_history>", "", current]
    return "\n".join(lines)


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


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

    def final_chunk(self, stop_reason: str | None, cost_usd: float | None) -> ChatCompletionChunk:
        return self.chunk(Delta(), finish_reason(stop_reason), cost_usd)

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
        self, text: str, stop_reason: str | None, usage: Usage, cost_usd: float | None
    ) -> ChatCompletion:
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[
                Choice(
                    index=0,
                    message=ResponseMessage(content=text),
                    finish_reason=finish_reason(stop_reason),
                )
            ],
            usage=usage,
            cost_usd=cost_usd,
        )
