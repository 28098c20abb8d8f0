"""OpenAI chat request shapes as attrs classes, and their converter hooks (the response
shapes are in wrapper.completions).

``parse_chat_request`` structures a decoded body into a frozen ``ChatRequest`` with
``converter``, this module's own ``StrictConverter`` (wrapper.strict), which holds the
hooks of these shapes and no others (the unapplied fields' shapes are structured by
wrapper.unapplied's converter).

Rules kept here:
- Strict about what is wrong: no value is coerced. A string is never a number, a number
  is never a string, a bool is never a number (and vice versa). The one widening OpenAI
  itself allows is an integer where a float is expected (``"temperature": 1``).
- Tolerant of what is merely unknown: extra keys, at any depth, are ignored, because
  clients add fields every month. ``null`` is accepted for every optional field.
- Every field OpenAI's reference knows is typed, applied or not (the unapplied ones'
  shapes are in wrapper.unapplied), and OpenAI's ranges and caps hold: ``temperature``
  0 to 2, at most 2,048 messages and 128 tools... (the constants below), each refused
  with a 400 naming the field. A capped array is measured before its items are
  structured, so no check grows faster than the body.
- ``decode_chat_request`` takes the raw body and decodes it with ``strict.decode_json``:
  anything that is not strict JSON (NaN, ``1e999``, bad UTF-8...) and JSON nested deeper
  than the decoder goes is a 400 ``invalid_json``, never a ``RecursionError``; a body with
  more than ``MAX_JSON_VALUES`` values is refused before it is decoded at all.
- Every failure is an ``InvalidRequest`` whose ``param`` is the OpenAI-style path of the
  first bad field (``messages[0].content``) and whose message names that path. No cattrs
  or attrs exception leaves this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs
from cattrs.gen import override

from wrapper import unapplied
from wrapper.errors import InvalidRequest
from wrapper.strict import (
    NotJSON,
    Refused,
    StrictConverter,
    TooDeep,
    decode_json,
    json_name,
    string_map,
    to_invalid_request,
    wrong_type,
)
from wrapper.unapplied import (
    Audio,
    MessageAudio,
    Moderation,
    Prediction,
    PromptCacheOptions,
    ResponseFormat,
    WebSearchOptions,
)

T = TypeVar("T")

# OpenAI's roles; "developer" is the newer name for "system" (o1 and later), "function"
# the legacy (pre-`tools`) form of "tool".
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# tool_choice and the legacy function_call, when given as a string.
TOOL_CHOICES = ("none", "auto", "required")
FUNCTION_CALLS = ("none", "auto")

# Caps on arrays, with OpenAI's own numbers wherever it publishes one, so that a client
# that works against OpenAI works here, and no request's parsing grows without bound.
# OpenAI: "'$.messages' is too long. Maximum length is 2048" (its 400, as quoted at
# https://portkey.ai/error-library/length-limit-error-10026).
MAX_MESSAGES = 2048
# OpenAI: "Invalid 'tools': array too long. Expected an array with maximum length 128"
# (https://docs.katalon.com/katalon-studio/troubleshooting/troubleshoot-studioassist-issues/invalid-tools-array-too-long);
# the legacy `functions` and our `allowed_tools`/`disallowed_tools` (names of Claude
# Code's ~20 tools) get the same cap.
MAX_TOOLS = 128
# OpenAI publishes no cap on a message's content parts: the messages cap, since parts are
# the same kind of list one level down (the body limit bounds the product).
MAX_PARTS = 2048
# OpenAI: "Up to 4 sequences" (the `stop` parameter).
MAX_STOP = 4
# OpenAI's `n`: "minimum 1, maximum 128". Each choice is a run of its own: what this
# server can run at once caps it further (wrapper.plan).
MAX_N = 128
# Model ids are ~30 characters (`claude-sonnet-4-5-20250929`), Bedrock inference-profile
# ARNs ~100; the id becomes one CLI argument (Linux caps one at 128 KiB) and a log field.
MAX_MODEL_CHARS = 256
# OpenAI's `metadata`: "Set of 16 key-value pairs ... Keys ... maximum length of 64
# characters. Values ... maximum length of 512 characters."
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
# OpenAI's `safety_identifier`: "a maximum length of 128 characters".
MAX_SAFETY_IDENTIFIER = 128
# JSON values in one body. CPython's decoder holds the GIL for its whole run, worker thread
# or not, at ~0.25 us a value (measured, 10 MiB of `[],`: 1.8 s), ~0.5 us a decimal number
# (checked to be finite in Python): this keeps the longest hold near 0.25 s, 0.5 s for a
# body of nothing but decimals. A real request is mostly text; the worst one the caps
# above let through, with the smallest content parts, reaches it at about 8 MB.
MAX_JSON_VALUES = 1_000_000


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
    # Accepted and ignored (an assistant's earlier refusal and audio answer).
    refusal: str | None = None
    audio: MessageAudio | None = None


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
    include_obfuscation: bool | None = None


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
    # Known to OpenAI, accepted, not applied: typed and range-checked all the same.
    audio: Audio | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    moderation: Moderation | None = None
    prediction: Prediction | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    prompt_cache_retention: str | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = None
    seed: int | None = None
    service_tier: str | None = None
    store: bool | None = None
    verbosity: str | None = None
    web_search_options: WebSearchOptions | None = None


# --- the converter: the hooks these shapes need --------------------------------------

converter = StrictConverter()


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


_messages = converter.at_most(list[Message], MAX_MESSAGES)


def _structure_messages(value: object, _: object) -> list[Message]:
    if value is None:
        raise wrong_type("an array", value)
    messages = _messages(value, None)
    assert isinstance(messages, list)
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


# A predicate, not a class hook: a union of attrs classes would go to cattrs' key-based
# disambiguator first.
converter.register_structure_hook_func(lambda t: t == ContentPart, _structure_part)
# The unapplied fields' shapes: wrapper.unapplied's, structured by its converter.
converter.register_structure_hook_func(
    lambda t: getattr(t, "__module__", None) == unapplied.__name__, unapplied.converter.structure
)
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
    converter.register_structure_hook(_cl, converter.object_hook(_cl))
_structure_message_fields = converter.object_hook(
    Message,
    role=override(struct_hook=_structure_role),
    content=override(
        struct_hook=converter.str_or_list(
            list[ContentPart], "a string or a list of content parts", MAX_PARTS
        )
    ),
)
converter.register_structure_hook(Message, _structure_message)
converter.register_structure_hook(
    ChatRequest,
    converter.object_hook(
        ChatRequest,
        messages=override(struct_hook=_structure_messages),
        model=override(struct_hook=converter.short_str(MAX_MODEL_CHARS)),
        n=override(struct_hook=converter.between(1, MAX_N, int)),
        stop=override(
            struct_hook=converter.str_or_list(list[str], "a string or a list of strings", MAX_STOP)
        ),
        tools=override(struct_hook=converter.at_most(list[ToolDefinition], MAX_TOOLS)),
        functions=override(struct_hook=converter.at_most(list[FunctionDefinition], MAX_TOOLS)),
        allowed_tools=override(struct_hook=converter.at_most(list[str], MAX_TOOLS)),
        disallowed_tools=override(struct_hook=converter.at_most(list[str], MAX_TOOLS)),
        tool_choice=override(struct_hook=_one_of(TOOL_CHOICES, NamedToolChoice)),
        function_call=override(struct_hook=_one_of(FUNCTION_CALLS, FunctionName)),
        # OpenAI's ranges, from its reference.
        temperature=override(struct_hook=converter.between(0, 2)),
        top_p=override(struct_hook=converter.between(0, 1)),
        frequency_penalty=override(struct_hook=converter.between(-2, 2)),
        presence_penalty=override(struct_hook=converter.between(-2, 2)),
        top_logprobs=override(struct_hook=converter.between(0, 20, int)),
        logit_bias=override(struct_hook=string_map(converter.between(-100, 100, int))),
        metadata=override(
            struct_hook=string_map(
                converter.short_str(MAX_METADATA_VALUE), MAX_METADATA_PAIRS, MAX_METADATA_KEY
            )
        ),
        safety_identifier=override(struct_hook=converter.short_str(MAX_SAFETY_IDENTIFIER)),
    ),
)


def decode_chat_request(body: bytes) -> ChatRequest:
    """Decode and structure a raw request body; raises ``InvalidRequest`` for a body that
    is not JSON (code ``invalid_json``), holds too many values, or has a bad field."""
    values = json_values(body)
    if values > MAX_JSON_VALUES:
        raise InvalidRequest(
            f"The request body holds too many JSON values: up to {values:,} (counting its"
            f" ',', '[' and '{{'), and this server decodes at most {MAX_JSON_VALUES:,}.",
            code="too_many_values",
        )
    try:
        decoded = decode_json(body)
    except TooDeep as exc:
        raise InvalidRequest(
            f"The request body nests arrays and objects too deeply to be decoded ({exc}).",
            code="invalid_json",
        ) from exc
    except NotJSON as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    return parse_chat_request(decoded)


def json_values(body: bytes) -> int:
    """An upper bound on the values a JSON text holds, in C-speed passes over its bytes
    (every value but a container's first follows a ',')."""
    return body.count(b",") + body.count(b"[") + body.count(b"{")


def parse_chat_request(body: object) -> ChatRequest:
    """Structure a decoded JSON body; raises ``InvalidRequest`` naming the first bad field."""
    if type(body) is not dict:
        got = json_name(body)
        raise InvalidRequest(f"The request body must be a JSON object, got {got}.")
    try:
        return converter.structure(body, ChatRequest)
    except Exception as exc:  # anything raised while structuring is the client's input
        raise to_invalid_request(exc) from exc
