"""OpenAI chat request and response shapes as attrs classes, and the strict converter.

``parse_chat_request`` structures whatever ``json.loads`` returned into a frozen
``ChatRequest`` with a dedicated cattrs converter; ``to_json`` turns the response
classes back into exactly the JSON OpenAI sends.

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
from typing import Any, Literal, TypeVar

import attrs
from cattrs import BaseValidationError, Converter
from cattrs.cols import list_structure_factory
from cattrs.errors import AttributeValidationNote, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from wrapper.errors import InvalidRequest

T = TypeVar("T")

# OpenAI's roles; "developer" is the newer name for "system" (o1 and later).
ROLES = ("system", "developer", "user", "assistant", "tool")


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
    role: str = "assistant"
    content: str | None
    refusal: None = None


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
class Delta:
    """Serialized without its None keys, as OpenAI does: ``{}`` ends a stream."""

    role: str | None = None
    content: str | None = None


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


# --- the converter ------------------------------------------------------------------


@attrs.define(auto_exc=True)
class _Refused(Exception):
    """Raised by our hooks; ``field`` extends the path when the hook sits one level up."""

    kind: Literal["type", "value", "missing"]
    detail: str = ""
    field: str = ""


_JSON_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _wrong_type(expected: str, value: object) -> _Refused:
    return _Refused("type", f"expected {expected}, got {_json_name(value)}")


def _to_invalid_request(exc: BaseException) -> InvalidRequest:
    """Follow the first error down cattrs' exception groups, building the field path."""
    path = ""
    while isinstance(exc, BaseValidationError):
        exc = exc.exceptions[0]
        for note in getattr(exc, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                path = f"{path}.{note.name}" if path else note.name
                break
            if isinstance(note, IterableValidationNote):
                path = f"{path}[{note.index}]"
                break
    if isinstance(exc, _Refused) and exc.field:
        path = f"{path}.{exc.field}" if path else exc.field
    if not path:
        return InvalidRequest("Invalid request body.")
    # cattrs reports a missing required key as the KeyError from reading it.
    if isinstance(exc, KeyError) or (isinstance(exc, _Refused) and exc.kind == "missing"):
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=path)
    if isinstance(exc, _Refused):
        message = f"Invalid {exc.kind} for '{path}': {exc.detail}."
        return InvalidRequest(message, param=path)
    return InvalidRequest(f"Invalid value for '{path}'.", param=path)


# Detailed validation is what gives each error the notes that spell its path.
_converter = Converter(detailed_validation=True, forbid_extra_keys=False)


def _exact(expected: type[T], name: str) -> Callable[[object, object], T]:
    def hook(value: object, _: object) -> T:
        # `type() is`, not isinstance: bool is an int subclass and must not pass as one.
        if type(value) is not expected:
            raise _wrong_type(name, value)
        return value

    return hook


def _structure_float(value: object, _: object) -> float:
    # JSON has one number type: OpenAI takes `"temperature": 1` for its float fields.
    if type(value) is int or type(value) is float:
        return float(value)
    raise _wrong_type("a number", value)


def _list_hook(list_type: Any) -> Callable[[object, object], list[Any]]:
    # cattrs takes any iterable as a list: a dict would become its keys, a str its letters.
    elements = list_structure_factory(list_type, _converter)

    def hook(value: object, _: object) -> list[Any]:
        if type(value) is not list:
            raise _wrong_type("an array", value)
        return elements(value, list_type)  # type: ignore[no-any-return]

    return hook


def _object_hook(cl: type[T], **overrides: Any) -> Callable[[object, object], T]:
    # Without this check a list or a string reaches the generated code and fails as a
    # KeyError or TypeError blamed on the class's first field.
    fields = make_dict_structure_fn(cl, _converter, **overrides)

    def hook(value: object, _: object) -> T:
        if type(value) is not dict:
            raise _wrong_type("an object", value)
        return fields(value, cl)

    return hook


def _str_or_list(items: Any, expected: str) -> Callable[[object, object], object]:
    def hook(value: object, _: object) -> object:
        if value is None or type(value) is str:
            return value
        if type(value) is list:
            return _converter.structure(value, items)
        raise _wrong_type(expected, value)

    return hook


def _structure_part(value: object, _: object) -> ContentPart:
    if type(value) is not dict:
        raise _wrong_type("an object", value)
    if "type" not in value:
        raise _Refused("missing", field="type")
    kind = value["type"]
    if kind == "text":
        return _converter.structure(value, TextPart)
    if kind == "image_url":
        return _converter.structure(value, ImagePart)
    # input_audio, file and any future kind: refused, since dropping it silently would
    # answer a question the client did not ask.
    raise _Refused("value", f"unsupported content part type {kind!r}", field="type")


def _structure_role(value: object, _: object) -> str:
    role = _converter.structure(value, str)
    if role not in ROLES:
        allowed = ", ".join(repr(r) for r in ROLES)
        raise _Refused("value", f"{role!r} is not one of {allowed}")
    return role


def _structure_message(value: object, _: object) -> Message:
    message = _structure_message_fields(value, Message)
    if message.content is None and message.role != "assistant":
        assert isinstance(value, dict)
        if "content" not in value:
            raise _Refused("missing", field="content")
        detail = f"only assistant messages may have null content, not {message.role!r}"
        raise _Refused("value", detail, field="content")
    return message


def _structure_messages(value: object, _: object) -> list[Message]:
    messages = _converter.structure(value, list[Message])
    if not messages:
        raise _Refused("value", "expected at least one message, got an empty array")
    return messages


def _structure_n(value: object, _: object) -> object:
    # One Claude Code run gives one answer; n > 1 would cost n runs for a rare need.
    if value is not None and _converter.structure(value, int) != 1:
        raise _Refused("value", f"only n=1 is supported, got {value}")
    return value


_converter.register_structure_hook(str, _exact(str, "a string"))
_converter.register_structure_hook(int, _exact(int, "an integer"))
_converter.register_structure_hook(bool, _exact(bool, "a boolean"))
_converter.register_structure_hook(float, _structure_float)
# Predicates, not class hooks: a class hook on `object` would match every type, and a
# union of attrs classes would go to cattrs' key-based disambiguator first.
_converter.register_structure_hook_func(lambda t: t is object, lambda v, _: v)
_converter.register_structure_hook_func(lambda t: t == ContentPart, _structure_part)
_converter.register_structure_hook_factory(
    lambda t: getattr(t, "__origin__", None) is list, _list_hook
)
# Leaves first: make_dict_structure_fn looks up each field's hook when it is called.
for _cl in (TextPart, ImagePart, ToolCallFunction, ToolCall, StreamOptions):
    _converter.register_structure_hook(_cl, _object_hook(_cl))
_structure_message_fields = _object_hook(
    Message,
    role=override(struct_hook=_structure_role),
    content=override(
        struct_hook=_str_or_list(list[ContentPart], "a string or a list of content parts")
    ),
)
_converter.register_structure_hook(Message, _structure_message)
_converter.register_structure_hook(
    ChatRequest,
    _object_hook(
        ChatRequest,
        messages=override(struct_hook=_structure_messages),
        n=override(struct_hook=_structure_n),
        stop=override(struct_hook=_str_or_list(list[str], "a string or a list of strings")),
    ),
)
_converter.register_unstructure_hook(
    Delta, make_dict_unstructure_fn(Delta, _converter, _cattrs_omit_if_default=True)
)
for _cls in (ChatCompletion, ChatCompletionChunk):
    _converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, _converter, cost_usd=override(omit_if_default=True))
    )


def parse_chat_request(body: object) -> ChatRequest:
    """Structure a decoded JSON body; raises ``InvalidRequest`` naming the first bad field."""
    if type(body) is not dict:
        got = _json_name(body)
        raise InvalidRequest(f"The request body must be a JSON object, got {got}.")
    try:
        return _converter.structure(body, ChatRequest)
    except Exception as exc:  # anything raised while structuring is the client's input
        raise _to_invalid_request(exc) from exc


def to_json(obj: attrs.AttrsInstance) -> dict[str, Any]:
    """Unstructure a response class into the dict that goes on the wire."""
    out = _converter.unstructure(obj)
    assert isinstance(out, dict)
    return out
