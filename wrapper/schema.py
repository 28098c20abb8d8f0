"""OpenAI chat request and response shapes as attrs classes, and their converter hooks.

``parse_chat_request`` structures whatever ``json.loads`` returned into a frozen
``ChatRequest`` with the strict converter of wrapper.strict; ``to_json`` turns the
response classes back into exactly the JSON OpenAI sends.

Rules kept here:
- Strict about what is wrong: no value is coerced. A string is never a number, a number
  is never a string, a bool is never a number (and vice versa). The one widening OpenAI
  itself allows is an integer where a float is expected (``"temperature": 1``).
- Tolerant of what is merely unknown: extra keys, at any depth, are ignored, because
  clients add fields every month (``seed``, ``metadata``, ``reasoning_effort`` ...).
  ``null`` is accepted for every optional field.
- Every failure is an ``InvalidRequest`` whose ``param`` is the OpenAI-style path of the
  first bad field (``messages[0].content``) and whose message names that path. No cattrs
  or attrs exception leaves this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from wrapper.errors import InvalidRequest
from wrapper.strict import (
    Refused,
    converter,
    json_name,
    object_hook,
    str_or_list,
    to_invalid_request,
    wrong_type,
)

T = TypeVar("T")

# OpenAI's roles; "developer" is the newer name for "system" (o1 and later), "function"
# the legacy (pre-`tools`) form of "tool".
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# tool_choice and the legacy function_call, when given as a string.
TOOL_CHOICES = ("none", "auto", "required")
FUNCTION_CALLS = ("none", "auto")


# --- request side -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TextPart:
    type: str = "text"
    text: str


@attrs.frozen(kw_only=True)
class ImagePart:
    type: str = "image_url"
    # Kept as sent ({"url": ..., "detail": ...}); the converter decides what it can use.
    image_url: object


ContentPart = TextPart | ImagePart


@attrs.frozen(kw_only=True)
class ToolCallFunction:
    name: str
    arguments: str


@attrs.frozen(kw_only=True)
class ToolCall:
    id: str
    type: str = "function"
    function: ToolCallFunction


@attrs.frozen(kw_only=True)
class Message:
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # Legacy: an assistant's single call, answered by a "function" message.
    function_call: ToolCallFunction | None = None


@attrs.frozen(kw_only=True)
class FunctionDefinition:
    """A client function: what ``tools[].function`` and legacy ``functions[]`` hold."""

    name: str
    description: str | None = None
    # A JSON Schema, kept as sent; wrapper.tools checks what Claude needs of it.
    parameters: dict[str, object] | None = None
    # Accepted, not enforced: Claude Code cannot constrain decoding to the schema.
    strict: bool | None = None


@attrs.frozen(kw_only=True)
class ToolDefinition:
    type: str
    function: FunctionDefinition


@attrs.frozen(kw_only=True)
class FunctionName:
    name: str


@attrs.frozen(kw_only=True)
class NamedToolChoice:
    type: str
    function: FunctionName


@attrs.frozen(kw_only=True)
class StreamOptions:
    include_usage: bool | None = None


@attrs.frozen(kw_only=True)
class ChatRequest:
    messages: list[Message]
    # Missing or null: the server's default model.
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    session_id: str | None = None
    enable_tools: bool | None = None
    # Narrow the server's Claude Code tools (wrapper.builtin); never widen them.
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: str | FunctionName | None = None


# --- response side ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PromptTokensDetails:
    cached_tokens: int


@attrs.frozen(kw_only=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


@attrs.frozen(kw_only=True)
class ResponseMessage:
    """``tool_calls`` and the legacy ``function_call`` are sent only when present."""

    role: str = "assistant"
    content: str | None
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


# --- the converter: the hooks these shapes need --------------------------------------


def _structure_part(value: object, _: object) -> ContentPart:
    if type(value) is not dict:
        raise wrong_type("an object", value)
    if "type" not in value:
        raise Refused("missing", field="type")
    kind = value["type"]
    if kind == "text":
        return converter.structure(value, TextPart)
    if kind == "image_url":
        return converter.structure(value, ImagePart)
    # input_audio, file and any future kind: refused, since dropping it silently would
    # answer a question the client did not ask.
    raise Refused("value", f"unsupported content part type {kind!r}", field="type")


def _structure_role(value: object, _: object) -> str:
    role = converter.structure(value, str)
    if role not in ROLES:
        allowed = ", ".join(repr(r) for r in ROLES)
        raise Refused("value", f"{role!r} is not one of {allowed}")
    return role


def _structure_message(value: object, _: object) -> Message:
    message = _structure_message_fields(value, Message)
    if message.content is None and message.role != "assistant":
        assert isinstance(value, dict)
        if "content" not in value:
            raise Refused("missing", field="content")
        detail = f"only assistant messages may have null content, not {message.role!r}"
        raise Refused("value", detail, field="content")
    return message


def _structure_messages(value: object, _: object) -> list[Message]:
    messages = converter.structure(value, list[Message])
    if not messages:
        raise Refused("value", "expected at least one message, got an empty array")
    return messages


def _one_of(words: tuple[str, ...], named: type[T]) -> Callable[[object, object], object]:
    """A string from ``words`` or an object naming a function (tool_choice, function_call)."""
    expected = ", ".join(repr(w) for w in words) + " or an object naming a function"

    def hook(value: object, _: object) -> object:
        if value is None or type(value) is dict:
            return None if value is None else converter.structure(value, named)
        if type(value) is not str:
            raise wrong_type(expected, value)
        if value not in words:
            raise Refused("value", f"{value!r} is not one of {expected}")
        return value

    return hook


def _structure_n(value: object, _: object) -> object:
    # One Claude Code run gives one answer; n > 1 would cost n runs for a rare need.
    if value is not None and converter.structure(value, int) != 1:
        raise Refused("value", f"only n=1 is supported, got {value}")
    return value


# A predicate, not a class hook: a union of attrs classes would go to cattrs' key-based
# disambiguator first.
converter.register_structure_hook_func(lambda t: t == ContentPart, _structure_part)
# Leaves first: make_dict_structure_fn looks up each field's hook when it is called.
for _cl in (
    TextPart,
    ImagePart,
    ToolCallFunction,
    ToolCall,
    StreamOptions,
    FunctionDefinition,
    ToolDefinition,
    FunctionName,
    NamedToolChoice,
):
    converter.register_structure_hook(_cl, object_hook(_cl))
_structure_message_fields = object_hook(
    Message,
    role=override(struct_hook=_structure_role),
    content=override(
        struct_hook=str_or_list(list[ContentPart], "a string or a list of content parts")
    ),
)
converter.register_structure_hook(Message, _structure_message)
converter.register_structure_hook(
    ChatRequest,
    object_hook(
        ChatRequest,
        messages=override(struct_hook=_structure_messages),
        n=override(struct_hook=_structure_n),
        stop=override(struct_hook=str_or_list(list[str], "a string or a list of strings")),
        tool_choice=override(struct_hook=_one_of(TOOL_CHOICES, NamedToolChoice)),
        function_call=override(struct_hook=_one_of(FUNCTION_CALLS, FunctionName)),
    ),
)
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
        tool_calls=override(omit_if_default=True),
        function_call=override(omit_if_default=True),
    ),
)
for _cls in (ChatCompletion, ChatCompletionChunk):
    converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, converter, cost_usd=override(omit_if_default=True))
    )


def parse_chat_request(body: object) -> ChatRequest:
    """Structure a decoded JSON body; raises ``InvalidRequest`` naming the first bad field."""
    if type(body) is not dict:
        got = json_name(body)
        raise InvalidRequest(f"The request body must be a JSON object, got {got}.")
    try:
        return converter.structure(body, ChatRequest)
    except Exception as exc:  # anything raised while structuring is the client's input
        raise to_invalid_request(exc) from exc


def to_json(obj: attrs.AttrsInstance) -> dict[str, Any]:
    """Unstructure a response class into the dict that goes on the wire."""
    out = converter.unstructure(obj)
    assert isinstance(out, dict)
    return out
