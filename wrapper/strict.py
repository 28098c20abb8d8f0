"""Strict JSON in: the one decoder, a strict cattrs converter, and errors that name the
bad field's path.

``decode_json`` is the one JSON decoder for what clients send (a body, a call's
arguments). ``StrictConverter`` knows the JSON scalars, arrays and free-form objects, and
makes the hooks the shapes need; each schema module builds its own (wrapper.schema,
wrapper.unapplied) and registers its shapes' hooks on it, so no module changes another's
converter and none depends on the order modules are imported in. ``to_invalid_request``
turns whatever structuring raised into one ``InvalidRequest`` whose ``param`` is the
OpenAI-style path of the first bad field (``messages[0].content``).

Rules kept here:
- JSON is RFC 8259's: ``NaN`` and ``Infinity`` (which Python's json accepts) are refused,
  and so is a number too large for a double (``1e999``, which Python makes ``inf``): no
  value this server keeps or sends on is one JSON cannot write.
- No value is coerced. A string is never a number, a number is never a string, a bool is
  never a number (and vice versa). The one widening OpenAI itself allows is an integer
  where a float is expected (``"temperature": 1``).
- Every hook checks the JSON type before anything else, so an error blames the field that
  is wrong, not the first field of the class it sits in.
- Every check is linear in the size of the value, and a capped array is measured before
  any of its items is structured, so a huge array costs its length check and no more.
- A free-form value (a function's JSON Schema, kept as sent) may nest at most
  ``MAX_DEPTH`` levels: code downstream that walks or re-serializes it recursively
  (json.dumps, the SDK's MCP server) can then never meet a ``RecursionError``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import attrs
from cattrs import BaseValidationError, Converter
from cattrs.cols import list_structure_factory
from cattrs.errors import AttributeValidationNote, IterableValidationNote
from cattrs.gen import make_dict_structure_fn

from wrapper.errors import InvalidRequest

T = TypeVar("T")

# Containers within one free-form value; serde_json's default recursion limit. Real tool
# schemas nest a few levels (OpenAI's strict mode allows 10 schema levels, ~20 of these),
# and it stays far below CPython's recursion limit of 1,000.
MAX_DEPTH = 128


class NotJSON(ValueError):
    """Raised by ``decode_json`` when a text is not JSON; the message says why."""


class TooDeep(NotJSON):
    """Raised by ``decode_json`` when a text nests deeper than CPython's decoder can go."""


def decode_json(text: str | bytes) -> object:
    """``text`` decoded as strict JSON (bytes as UTF-8, -16 or -32, as RFC 8259 allows).
    Raises ``NotJSON`` for invalid JSON, bad UTF-8, an integer over 4,300 digits (Python's
    cap), NaN, Infinity or a number out of a double's range; ``TooDeep`` past the decoder's
    depth, never a ``RecursionError``."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError as exc:
        # CPython's decoder spends a stack frame per array or object it is inside, up to
        # the recursion limit (1,000, less the caller's frames).
        raise TooDeep(f"the limit is about {sys.getrecursionlimit()} levels") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a too long integer
        raise NotJSON(str(exc)) from exc


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        shown = text if len(text) <= 20 else f"{text[:20]}..."
        raise ValueError(f"the number {shown} is out of range (a double's: about 1.8e308)")
    return number


@attrs.define(auto_exc=True)
class Refused(Exception):
    """Raised by our hooks; ``field`` extends the path when the hook sits one level up."""

    kind: Literal["type", "value", "missing"]
    detail: str = ""
    field: str = ""
    # The OpenAI error code, where OpenAI has one for this failure.
    code: str | None = None


_JSON_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def json_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def wrong_type(expected: str, value: object) -> Refused:
    return Refused("type", f"expected {expected}, got {json_name(value)}")


def to_invalid_request(exc: BaseException) -> InvalidRequest:
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
    if isinstance(exc, Refused) and exc.field:
        path = f"{path}.{exc.field}" if path else exc.field
    if not path:
        return InvalidRequest("Invalid request body.")
    # cattrs reports a missing required key as the KeyError from reading it.
    if isinstance(exc, KeyError) or (isinstance(exc, Refused) and exc.kind == "missing"):
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=path)
    if isinstance(exc, Refused):
        message = f"Invalid {exc.kind} for '{path}': {exc.detail}."
        return InvalidRequest(message, param=path, code=exc.code)
    return InvalidRequest(f"Invalid value for '{path}'.", param=path)


def exact(expected: type[T], name: str) -> Callable[[object, object], T]:
    def hook(value: object, _: object) -> T:
        # `type() is`, not isinstance: bool is an int subclass and must not pass as one.
        if type(value) is not expected:
            raise wrong_type(name, value)
        return value

    return hook


def _structure_float(value: object, _: object) -> float:
    # JSON has one number type: OpenAI takes `"temperature": 1` for its float fields.
    if type(value) is int or type(value) is float:
        return float(value)
    raise wrong_type("a number", value)


def _too_long(value: object, most: int | None) -> None:
    if most is not None and type(value) is list and len(value) > most:
        # OpenAI's own wording and code for the same failure.
        detail = f"array too long, expected at most {most} items, got {len(value)}"
        raise Refused("value", detail, code="array_above_max_length")


def string_map(
    values: Callable[[object, object], object], most: int | None = None, key_chars: int = 0
) -> Callable[[object, object], dict[str, object] | None]:
    """An object whose keys are free strings (at most ``key_chars`` long when given) and
    whose values pass ``values``, with at most ``most`` pairs; or null."""

    def hook(value: object, _: object) -> dict[str, object] | None:
        if value is None:
            return None
        if type(value) is not dict:
            raise wrong_type("an object", value)
        if most is not None and len(value) > most:
            raise Refused("value", f"expected at most {most} pairs, got {len(value)}")
        out = {}
        for key, item in value.items():
            if key_chars and len(key) > key_chars:
                detail = f"keys are at most {key_chars} characters, got {len(key)}"
                raise Refused("value", detail, code="string_above_max_length")
            try:
                out[key] = values(item, None)
            except Refused as exc:
                raise Refused(exc.kind, exc.detail, key, exc.code) from None
        return out

    return hook


def _containers(values: Any) -> list[Any]:
    return [v for v in values if type(v) is dict or type(v) is list]


def deeper_than(value: object, most: int) -> bool:
    """Whether ``value`` nests more than ``most`` arrays and objects; level by level, not
    recursively, since the check must not be what overflows."""
    level = _containers([value])
    for _ in range(most):
        level = _containers(
            c for item in level for c in (item.values() if type(item) is dict else item)
        )
        if not level:
            return False
    return bool(level)


def free_form(expected: type | None) -> Callable[[object, object], Any]:
    """Any JSON value (an object when ``expected`` is dict), kept as sent: its depth is
    the one thing checked."""

    def hook(value: object, _: object) -> Any:
        if expected is not None and type(value) is not expected:
            raise wrong_type("an object", value)
        if deeper_than(value, MAX_DEPTH):
            raise Refused("value", f"nested deeper than {MAX_DEPTH} levels")
        return value

    return hook


class StrictConverter(Converter):
    """A converter for decoded JSON that coerces nothing, and the maker of the hooks a
    schema module's shapes need (each hook structures what it holds with this converter)."""

    def __init__(self) -> None:
        # Detailed validation is what gives each error the notes that spell its path.
        super().__init__(detailed_validation=True, forbid_extra_keys=False)
        self.register_structure_hook(str, exact(str, "a string"))
        self.register_structure_hook(int, exact(int, "an integer"))
        self.register_structure_hook(bool, exact(bool, "a boolean"))
        self.register_structure_hook(float, _structure_float)
        # Predicates, not class hooks: a class hook on `object` would match every type,
        # and dict[str, object] is no class at all.
        self.register_structure_hook_func(lambda t: t is object, free_form(None))
        self.register_structure_hook_func(lambda t: t == dict[str, object], free_form(dict))
        self.register_structure_hook_factory(
            lambda t: getattr(t, "__origin__", None) is list, self._list_hook
        )

    def _list_hook(self, list_type: Any) -> Callable[[object, object], list[Any]]:
        # cattrs takes any iterable as a list: a dict would become its keys, a str its
        # letters.
        elements = list_structure_factory(list_type, self)

        def hook(value: object, _: object) -> list[Any]:
            if type(value) is not list:
                raise wrong_type("an array", value)
            return elements(value, list_type)  # type: ignore[no-any-return]

        return hook

    def object_hook(self, cl: type[T], **overrides: Any) -> Callable[[object, object], T]:
        # Without this check a list or a string reaches the generated code and fails as a
        # KeyError or TypeError blamed on the class's first field.
        fields = make_dict_structure_fn(cl, self, **overrides)

        def hook(value: object, _: object) -> T:
            if type(value) is not dict:
                raise wrong_type("an object", value)
            return fields(value, cl)

        return hook

    def at_most(self, items: Any, most: int) -> Callable[[object, object], object]:
        """An array of at most ``most`` items (``items`` is its list type), or null."""

        def hook(value: object, _: object) -> object:
            if value is None:
                return None
            _too_long(value, most)
            return self.structure(value, items)

        return hook

    def str_or_list(
        self, items: Any, expected: str, most: int | None = None
    ) -> Callable[[object, object], object]:
        def hook(value: object, _: object) -> object:
            if value is None or type(value) is str:
                return value
            if type(value) is list:
                _too_long(value, most)
                return self.structure(value, items)
            raise wrong_type(expected, value)

        return hook

    def short_str(self, most: int) -> Callable[[object, object], str | None]:
        """A string of at most ``most`` characters, or null."""

        def hook(value: object, _: object) -> str | None:
            if value is None:
                return None
            text = self.structure(value, str)
            if len(text) > most:
                detail = f"string too long, expected at most {most} characters, got {len(text)}"
                raise Refused("value", detail, code="string_above_max_length")
            return text

        return hook

    def between(
        self, low: int, high: int, kind: type[float] | type[int] = float
    ) -> Callable[..., object]:
        """A number (an integer when ``kind`` is int) from ``low`` to ``high``, or null."""
        name = "an integer" if kind is int else "a number"

        def hook(value: object, _: object) -> object:
            if value is None:
                return None
            number = self.structure(value, kind)
            if not low <= number <= high:
                raise Refused("value", f"expected {name} from {low} to {high}, got {value}")
            return number

        return hook
