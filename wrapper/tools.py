"""Pure: OpenAI function calling <-> Claude tool use. No I/O.

Theory of operation. The client's functions (``tools``, or the legacy ``functions``)
become real tools of the run; when Claude calls one, the backend stops the run and the
client gets the call. The client runs it and comes back with the whole conversation:
assistant ``tool_calls`` and ``tool`` results. That conversation is turned here into
Anthropic messages, with real ``tool_use`` and ``tool_result`` blocks whose ids match,
which the backend resumes as a Claude Code transcript.

Rules kept here:
- Everything a client can get wrong is refused with a 400 naming the field: a bad function
  name (OpenAI's own rule, ``NAME_RE``), parameters that are not an object schema, a
  ``tool_choice`` naming an unknown function or ``required`` with nothing to call, tool
  call arguments that are not a JSON object, a result that answers no open call or
  follows no assistant calls, a call left without a result.
- ``tool_choice`` cannot be passed to the API through Claude Code, so it is honoured as
  closely as the CLI allows: ``none`` offers no function; a named function is the only one
  offered; ``required`` and a named choice are asked for in the system prompt. If Claude
  answers in text anyway, that answer is what the client gets: a call is never made up.
- ``parallel_tool_calls: false`` (and the legacy form, which has room for one call) is
  asked for in the system prompt too, and at most the first call is reported.
  ``strict: true`` is accepted but not enforced: Claude Code cannot constrain decoding.
- Only the client's functions are ever reported as calls: a tool_use of any other name
  (Claude Code's own tools) is not the client's business.
- Ids: Claude's ``toolu_X`` is reported as ``call_X``. The ids a client sends back are kept
  as the tool_use ids of the transcript when the API takes them, else replaced by a
  stable hash, the same for the call and its result.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import attrs

from wrapper import builtin
from wrapper.builtin import ToolRequest
from wrapper.errors import InvalidRequest
from wrapper.schema import ChatRequest, FunctionDefinition, FunctionName, Message, NamedToolChoice
from wrapper.strict import MAX_DEPTH, NotJSON, TooDeep, decode_json, deeper_than

# OpenAI's rule for function names.
NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# What the Anthropic API takes as a tool_use id.
TOOL_USE_ID_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# A function without parameters still takes an (empty) object.
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

JSONObject = dict[str, Any]


@attrs.frozen
class Function:
    """A client function as Claude is given it."""

    name: str
    description: str
    parameters: JSONObject


@attrs.frozen
class Calling:
    """How one turn offers the client's functions."""

    functions: tuple[Function, ...] = ()
    # The request used `functions`/`function_call`: answer with `message.function_call`.
    legacy: bool = False
    # Report at most one call (parallel_tool_calls false, or legacy).
    single: bool = False
    # What the system prompt asks of Claude about calling (tool_choice, parallel calls).
    instruction: str | None = None
    # What the request asks of Claude Code's own tools (wrapper.builtin).
    builtin: ToolRequest = attrs.field(factory=ToolRequest)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.functions)


def _invalid(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {detail}.", param=param)


# --- the request's functions and tool_choice -------------------------------------------


def calling(request: ChatRequest) -> Calling:
    """The functions this turn offers Claude and what it asks of it; refuses bad input."""
    legacy = request.functions is not None
    if legacy and request.tools is not None:
        raise _invalid("functions", "send either 'tools' or the legacy 'functions', not both")
    if legacy and request.tool_choice is not None:
        raise _invalid("tool_choice", "with the legacy 'functions', use 'function_call'")
    if not legacy and request.function_call is not None:
        raise _invalid("function_call", "'function_call' goes with 'functions'; use 'tool_choice'")
    if legacy:
        definitions = [(f"functions[{i}]", d) for i, d in enumerate(request.functions or [])]
        choice: object = request.function_call
        choice_param = "function_call"
    else:
        definitions = []
        for i, tool in enumerate(request.tools or []):
            if tool.type != "function":
                raise _invalid(
                    f"tools[{i}].type", f"only 'function' tools exist, not {tool.type!r}"
                )
            definitions.append((f"tools[{i}].function", tool.function))
        choice = request.tool_choice
        choice_param = "tool_choice"
    functions: list[Function] = []
    names: set[str] = set()  # a set, not a scan of `functions`: the check stays linear
    for path, definition in definitions:
        function = _function(definition, path)
        if function.name in names:
            raise _invalid(f"{path}.name", f"the function {function.name!r} is defined twice")
        names.add(function.name)
        functions.append(function)
    offered, instruction = _choose(functions, choice, choice_param)
    single = bool(offered) and (legacy or request.parallel_tool_calls is False)
    if single:
        instruction = " ".join(filter(None, [instruction, "Call at most one function per reply."]))
    return Calling(tuple(offered), legacy, single, instruction, builtin.requested(request))


def _function(definition: FunctionDefinition, path: str) -> Function:
    if not NAME_RE.fullmatch(definition.name):
        raise _invalid(
            f"{path}.name",
            "a function name is 1 to 64 letters, digits, underscores or dashes,"
            f" not {definition.name!r}",
        )
    return Function(
        definition.name,
        definition.description or "",
        _schema(definition.parameters, f"{path}.parameters"),
    )


def _schema(parameters: dict[str, object] | None, param: str) -> JSONObject:
    if parameters is None:
        return dict(EMPTY_SCHEMA)
    kind = parameters.get("type", "object")
    if kind != "object":
        raise _invalid(
            param,
            f"a function takes an object, so its schema's type must be 'object', not {kind!r}",
        )
    if type(parameters.get("properties", {})) is not dict:
        raise _invalid(f"{param}.properties", "expected an object")
    return {**EMPTY_SCHEMA, **parameters}


def _choose(
    functions: list[Function], choice: object, param: str
) -> tuple[list[Function], str | None]:
    if choice is None:
        choice = "auto"
    if choice == "none":
        return [], None
    if choice == "auto":
        return functions, None
    if choice == "required":
        if not functions:
            raise _invalid(param, "'required' needs at least one function to call")
        return functions, "You must call at least one of your functions before answering."
    if isinstance(choice, NamedToolChoice):
        if choice.type != "function":
            raise _invalid(f"{param}.type", f"expected 'function', not {choice.type!r}")
        name, name_param = choice.function.name, f"{param}.function.name"
    else:
        assert isinstance(choice, FunctionName)  # the legacy function_call's {"name": ...}
        name, name_param = choice.name, f"{param}.name"
    named = [f for f in functions if f.name == name]
    if not named:
        raise _invalid(name_param, f"no function named {name!r} was given")
    return named, f"You must call the function {name} in this reply."


# --- the conversation, as Anthropic messages -------------------------------------------


def holds_calls(messages: list[Message]) -> bool:
    """Whether a conversation needs tool_use/tool_result blocks (the transcript route)."""
    return any(
        m.role in ("tool", "function") or m.tool_calls or m.function_call is not None
        for m in messages
    )


def tool_use_id(call_id: str) -> str:
    """The tool_use id the API gets for a client's call id; the same for call and result."""
    if TOOL_USE_ID_RE.fullmatch(call_id):
        return call_id
    return "toolu_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


def call_id(tool_use: str) -> str:
    return "call_" + tool_use.removeprefix("toolu_")


class _Conversation:
    """Builds the Anthropic messages, checking each result against the open calls."""

    def __init__(self) -> None:
        self.messages: list[JSONObject] = []
        self.seen_ids: set[str] = set()
        # The calls of the latest assistant message still waiting for a result.
        self.open: dict[str, str] = {}
        self.open_at: int | None = None

    def add(self, role: str, blocks: list[JSONObject]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": blocks})

    def close_calls(self) -> None:
        """The open calls must all have their results by now."""
        if self.open:
            param = f"messages[{self.open_at}].tool_calls"
            missing = ", ".join(repr(i) for i in self.open)
            raise _invalid(param, f"no tool message answers the call(s) {missing}")
        self.open_at = None

    def call(self, index: int, path: str, id_: str, name: str, arguments: str) -> JSONObject:
        if id_ in self.seen_ids:
            raise _invalid(f"{path}.id", f"the call id {id_!r} is used twice")
        self.seen_ids.add(id_)
        self.open[id_] = name
        self.open_at = index
        return {
            "type": "tool_use",
            "id": tool_use_id(id_),
            "name": name,
            "input": _arguments(arguments, f"{path}.function.arguments"),
        }

    def result(self, index: int, message: Message, text: str) -> JSONObject:
        if self.open_at is None:
            raise _invalid(
                f"messages[{index}].role",
                f"a {message.role!r} message must follow an assistant message that calls"
                " functions, and its other results",
            )
        if message.role == "function":  # legacy: answers the one call, by name
            id_ = f"call_{self.open_at}"
            if message.name is None:
                param = f"messages[{index}].name"
                raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
            if self.open.get(id_) != message.name:
                raise _invalid(f"messages[{index}].name", f"no open call of {message.name!r}")
        else:
            id_ = message.tool_call_id or ""
            if message.tool_call_id is None:
                param = f"messages[{index}].tool_call_id"
                raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
            if id_ not in self.open:
                raise _invalid(
                    f"messages[{index}].tool_call_id",
                    f"{id_!r} matches no unanswered call of messages[{self.open_at}]",
                )
        del self.open[id_]
        return {"type": "tool_result", "tool_use_id": tool_use_id(id_), "content": text}


def conversation(entries: list[tuple[int, Message, str]]) -> tuple[JSONObject, ...]:
    """The non-system messages (index, message, text) as Anthropic messages."""
    built = _Conversation()
    for index, message, text in entries:
        if message.role in ("tool", "function"):
            built.add("user", [built.result(index, message, text)])
            continue
        built.close_calls()
        blocks: list[JSONObject] = [{"type": "text", "text": text}] if text else []
        if message.role == "assistant":
            for j, call in enumerate(message.tool_calls or []):
                path = f"messages[{index}].tool_calls[{j}]"
                if call.type != "function":
                    raise _invalid(f"{path}.type", f"expected 'function', not {call.type!r}")
                fn = call.function
                blocks.append(built.call(index, path, call.id, fn.name, fn.arguments))
            if message.function_call is not None:
                fn = message.function_call
                path = f"messages[{index}].function_call"
                # Legacy calls carry no id; the message's place names the call.
                block = built.call(index, path, f"call_{index}", fn.name, fn.arguments)
                blocks.append(block)
        built.add(message.role, blocks)
    built.close_calls()
    return tuple(built.messages)


def _arguments(arguments: str, param: str) -> JSONObject:
    try:
        value = decode_json(arguments)
    except TooDeep as exc:
        raise _invalid(param, "the arguments nest too deeply to be decoded") from exc
    except NotJSON as exc:
        raise _invalid(param, f"the arguments are not valid JSON ({exc})") from exc
    if type(value) is not dict:
        raise _invalid(param, "the arguments must be a JSON object")
    if deeper_than(value, MAX_DEPTH):  # they go on into the transcript, as free-form JSON
        raise _invalid(param, f"the arguments nest deeper than {MAX_DEPTH} levels")
    return value
