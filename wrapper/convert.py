"""Pure: an OpenAI chat request -> what it asks of Claude Code (``plan.Ask``). No I/O.

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

The answer goes the other way in wrapper.encode.
"""

from __future__ import annotations

import re

import attrs

from wrapper import plan, structured, tools
from wrapper.errors import InvalidRequest
from wrapper.plan import Ask, Turn
from wrapper.schema import ChatRequest, ImagePart, Message, decode_chat_request

SYSTEM_ROLES = frozenset({"system", "developer"})
# Roles that may end a conversation: a question, or a function's result.
LAST_ROLES = frozenset({"user", "tool", "function"})
# The start of anything that could read as one of render_prompt's tags, whatever the case
# or spacing; its "<" is escaped. Over-matching (`<user-id>`) costs one "&lt;", no meaning.
FORGED_TAG = re.compile(r"<(?=\s*/?\s*(?:conversation_history|user|assistant)\b)", re.IGNORECASE)


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


def conversation(request: ChatRequest) -> tuple[tuple[str, str], ...]:
    """(role, text) of each message but system/developer ones: what a history key hashes."""
    return tuple(
        (m.role, _text(m, i)) for i, m in enumerate(request.messages) if m.role not in SYSTEM_ROLES
    )


def to_turn(request: ChatRequest, default_model: str, calling: tools.Calling | None = None) -> Turn:
    """Split a chat request into system prompt, conversation and the turn to answer."""
    calling = calling if calling is not None else tools.calling(request)
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
        return Turn("", system_prompt, model, calling.functions, calling.single, messages)
    *earlier, (_, _, current) = entries
    history = [(m.role, text) for _, m, text in earlier]
    prompt = render_prompt(history, current)
    return Turn(prompt, system_prompt, model, calling.functions, calling.single)


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


def stops(request: ChatRequest) -> tuple[str, ...]:
    """The request's stop sequences (``stop``: a string or up to 4), each once."""
    if request.stop is None:
        return ()
    listed = isinstance(request.stop, list)
    sequences = request.stop if isinstance(request.stop, list) else [request.stop]
    for index, sequence in enumerate(sequences):
        if not sequence:
            param = f"stop[{index}]" if listed else "stop"
            raise InvalidRequest(
                f"Invalid value for '{param}': a stop sequence cannot be empty.", param=param
            )
    return tuple(dict.fromkeys(sequences))


def max_tokens(request: ChatRequest) -> int | None:
    """The answer's token limit: ``max_completion_tokens``, or the older ``max_tokens``."""
    new, old = request.max_completion_tokens, request.max_tokens
    if new is not None and old is not None and new != old:
        raise InvalidRequest(
            "Invalid value for 'max_tokens': it differs from 'max_completion_tokens';"
            " send one of them.",
            param="max_tokens",
        )
    for name, value in (("max_completion_tokens", new), ("max_tokens", old)):
        if value is not None and value < 1:
            raise InvalidRequest(
                f"Invalid value for '{name}': it must be at least 1, got {value}.", param=name
            )
    return new if new is not None else old


@attrs.frozen
class Parsed:
    """A chat request body, parsed and turned into what it asks of Claude Code."""

    request: ChatRequest
    ask: Ask
    legacy: bool  # calls answered in the legacy ``function_call`` form


def parse(body: bytes, default_model: str, session_header: str | None = None) -> Parsed:
    """The raw body (and its ``X-Session-Id``) -> request and ask: all the CPU work a
    request costs before it runs (the handler may do it off the event loop). Refuses bad
    input."""
    request = decode_chat_request(body)
    calling = tools.calling(request)
    turn = to_turn(request, default_model, calling)
    ask = Ask(
        turn=attrs.evolve(turn, output_schema=structured.output_schema(request.response_format)),
        builtin=calling.builtin,
        conversation=conversation(request),
        session_id=plan.session_id_of(request.session_id, session_header),
        stops=stops(request),
        max_tokens=max_tokens(request),
        n=request.n or 1,
    )
    return Parsed(request, ask, calling.legacy)
