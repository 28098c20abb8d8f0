"""OpenAI chat completion response shapes as attrs classes, and ``to_json``, which turns
them into exactly the JSON OpenAI sends.

Rules kept here:
- The JSON is made by this module's own ``converter``: nothing else registers on it, and
  it registers nothing anywhere else.
- Optional keys OpenAI leaves out are left out (a delta's None keys, a message's absent
  calls, our ``cost_usd`` extension when unknown); keys OpenAI always sends are sent, null
  if need be (``logprobs``, ``system_fingerprint``, a chunk's ``usage``).
"""

from __future__ import annotations

from typing import Any

import attrs
from cattrs import Converter
from cattrs.gen import make_dict_unstructure_fn, override

from wrapper.schema import ToolCall, ToolCallFunction


@attrs.frozen(kw_only=True)
class PromptTokensDetails:
    cached_tokens: int


@attrs.frozen(kw_only=True)
class CompletionTokensDetails:
    reasoning_tokens: int


@attrs.frozen(kw_only=True)
class Usage:
    """``completion_tokens_details`` only when the reasoning tokens are known."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


@attrs.frozen(kw_only=True)
class ResponseMessage:
    """``tool_calls``, the legacy ``function_call`` and ``reasoning_content`` (Claude's
    thinking, as DeepSeek and OpenRouter send it) are sent only when present."""

    role: str = "assistant"
    content: str | None
    reasoning_content: str | None = None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None
    function_call: ToolCallFunction | None = None


@attrs.frozen(kw_only=True)
class Choice:
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


@attrs.frozen(kw_only=True)
class ChatCompletion:
    """A non-streamed answer. ``cost_usd`` is our extension, sent only when known."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None
    system_fingerprint: None = None
    cost_usd: float | None = None


@attrs.frozen(kw_only=True)
class DeltaFunction:
    name: str | None = None
    arguments: str | None = None


@attrs.frozen(kw_only=True)
class DeltaToolCall:
    """One piece of a streamed call: the first carries ``id``, ``type`` and the name."""

    index: int
    id: str | None = None
    type: str | None = None
    function: DeltaFunction


@attrs.frozen(kw_only=True)
class Delta:
    """Serialized without its None keys, as OpenAI does: ``{}`` ends a stream."""

    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    function_call: DeltaFunction | None = None


@attrs.frozen(kw_only=True)
class ChunkChoice:
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: None = None


@attrs.frozen(kw_only=True)
class ChatCompletionChunk:
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    # Always present, null until the final usage chunk (stream_options.include_usage).
    usage: Usage | None = None
    system_fingerprint: None = None
    cost_usd: float | None = None


@attrs.frozen(kw_only=True)
class Model:
    id: str
    object: str = "model"
    created: int
    owned_by: str


@attrs.frozen(kw_only=True)
class ModelList:
    object: str = "list"
    data: list[Model]


converter = Converter()

# Leaves first: a generated function looks up the hooks of its fields when it is made.
for _sparse in (DeltaFunction, DeltaToolCall, Delta):
    converter.register_unstructure_hook(
        _sparse, make_dict_unstructure_fn(_sparse, converter, _cattrs_omit_if_default=True)
    )
converter.register_unstructure_hook(
    ResponseMessage,
    make_dict_unstructure_fn(
        ResponseMessage,
        converter,
        reasoning_content=override(omit_if_default=True),
        tool_calls=override(omit_if_default=True),
        function_call=override(omit_if_default=True),
    ),
)
converter.register_unstructure_hook(
    Usage,
    make_dict_unstructure_fn(
        Usage, converter, completion_tokens_details=override(omit_if_default=True)
    ),
)
for _cls in (ChatCompletion, ChatCompletionChunk):
    converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, converter, cost_usd=override(omit_if_default=True))
    )


def to_json(obj: attrs.AttrsInstance) -> dict[str, Any]:
    """Unstructure a response class into the dict that goes on the wire."""
    out = converter.unstructure(obj)
    assert isinstance(out, dict)
    return out
