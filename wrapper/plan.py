"""Pure: what a request will run, and where, decided before it waits for anything.

A front door (wrapper.convert for chat completions) turns its request into an ``Ask``:
the ``Turn`` for Claude Code, in Claude's terms, the built-in tools it asks for, and the
conversation as (role, text) pairs. ``plan`` turns that into the ``Plan`` of its run:
- the turn with the built-in tools it may use (the server's policy, narrowed by the
  request; a widening is refused);
- where it works: a fresh scratch place, the client's session, or a continuation of a
  conversation this server answered before (wrapper.placement);
- how many answers (``n``): that many runs of the same turn in the same kind of place, at
  once. Each continued run resumes the same earlier turns and records its own answer, so
  whichever choice the client sends back next is continued;
- every refusal that depends only on the request, so each is a 4xx before the request
  takes a session lock or a run slot. What depends on stored state (a session's cap, a
  vanished transcript) is refused by the placement, after the lock, still before the slot.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from wrapper import builtin, errors
from wrapper.builtin import ToolRequest
from wrapper.config import Config
from wrapper.tools import Function

# Client-chosen session ids: short, printable, safe in headers, logs and URLs; not only
# dots, which URLs and proxies read as path steps (``/v1/sessions/..``).
SESSION_ID_RE = re.compile(r"(?!\.+\Z)[A-Za-z0-9._:-]{1,128}")


@attrs.frozen
class Turn:
    """One Claude Code run: what it answers, with what, offered which tools."""

    prompt: str
    system_prompt: str | None
    model: str
    # The client's functions, offered as tools; each call ends the run (wrapper.claude).
    functions: tuple[Function, ...] = ()
    # Report at most one call.
    single: bool = False
    # The conversation as Anthropic messages when it holds calls and results: the run
    # resumes it as a written transcript and sends no ``prompt``.
    messages: tuple[dict[str, Any], ...] = ()
    # Claude Code's own tools the run may use (wrapper.builtin), confined by the gate.
    tools: tuple[str, ...] = ()
    # The output limit of each API call of the run (the client's max_tokens).
    max_output_tokens: int | None = None
    # The JSON Schema of a structured answer (wrapper.structured), None for plain text.
    output_schema: dict[str, Any] | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.functions)


@attrs.frozen
class Ask:
    """A request, as every front door hands it to the planner."""

    turn: Turn
    builtin: ToolRequest
    # (role, text) of the messages but the system ones: what a conversation's key hashes.
    conversation: tuple[tuple[str, str], ...]
    session_id: str | None = None
    # Stop sequences: the answer ends before the first (wrapper.output).
    stops: tuple[str, ...] = ()
    # The answer's output limit in tokens, thinking included (wrapper.output).
    max_tokens: int | None = None
    # Independent answers to give (OpenAI's ``n``): one run each, at once.
    n: int = 1


@attrs.frozen
class Scratch:
    """A fresh place, removed after the run."""


@attrs.frozen
class InSession:
    """The tenant's session ``session_id``; ``messages``: how many the client sent."""

    session_id: str
    messages: int


@attrs.frozen
class Continued:
    """A stateless conversation, resumed when its earlier turns are one this server
    answered; ``conversation`` is the request's, ending with the question."""

    conversation: tuple[tuple[str, str], ...]


Where = Scratch | InSession | Continued


@attrs.frozen
class Plan:
    turn: Turn
    where: Where
    stops: tuple[str, ...] = ()
    max_tokens: int | None = None
    n: int = 1  # runs of the same turn, each its own answer (a choice)


def plan(ask: Ask, config: Config) -> Plan:
    """The plan of the run ``ask`` asks for, under ``config``; refuses what cannot run."""
    turn = attrs.evolve(
        ask.turn,
        tools=builtin.effective(ask.builtin, config.tools_allowed),
        max_output_tokens=ask.max_tokens,
    )
    most = min(config.max_concurrent_runs, config.max_runs_per_client)
    if ask.n > most:
        raise errors.InvalidRequest(
            f"Invalid value for 'n': {ask.n} answers need {ask.n} Claude Code runs at once,"
            f" and this server runs at most {most} for one client.",
            param="n",
        )
    if ask.session_id is not None:
        if ask.n > 1:
            raise errors.InvalidRequest(
                "'n' above 1 is not supported in a session: a session holds one history.",
                param="n",
                code="unsupported_in_session",
            )
        if turn.messages or turn.functions:
            raise errors.InvalidRequest(
                "Function calling is not supported in a session yet; send the request"
                " without 'session_id', with the whole conversation.",
                param="tools" if turn.functions else "messages",
                code="unsupported_in_session",
            )
        cuts = (("stop", ask.stops), ("max_tokens", ask.max_tokens))
        for param, asked in (*cuts, ("response_format", turn.output_schema)):
            if asked:  # the transcript would keep what Claude wrote past the cut
                raise errors.InvalidRequest(
                    f"'{param}' is not supported in a session yet: the session's transcript"
                    " would keep what Claude wrote, not the answer the client got.",
                    param=param,
                    code="unsupported_in_session",
                )
        return Plan(turn, InSession(ask.session_id, len(ask.conversation)))
    if ask.stops and turn.output_schema is not None:
        raise errors.InvalidRequest(
            "'stop' cannot apply to structured output ('response_format'): the answer is"
            " one JSON value, and a cut one would not parse.",
            param="stop",
        )
    last_role = ask.conversation[-1][0]
    if config.session_auto_continue and continuable(turn, ask) and last_role == "user":
        return Plan(turn, Continued(ask.conversation), n=ask.n)
    return Plan(turn, Scratch(), ask.stops, ask.max_tokens, ask.n)


def continuable(turn: Turn, ask: Ask) -> bool:
    """Plain conversations only: calls and built-in tools keep their own paths, and an
    answer cut by the server (a stop sequence, a token limit) or given as structured
    output is not the text Claude's transcript holds."""
    cut = ask.stops or ask.max_tokens is not None or turn.output_schema is not None
    return not (turn.messages or turn.functions or ask.builtin.enabled or cut)


def session_id_of(body: str | None, header: str | None) -> str | None:
    """The request's session id, from the body and/or ``X-Session-Id``; checked."""
    if body is not None and header is not None and body != header:
        raise errors.InvalidRequest(
            "The 'session_id' in the body and the X-Session-Id header differ.",
            param="session_id",
            code="session_id_mismatch",
        )
    value = body if body is not None else header
    if value is not None and not SESSION_ID_RE.fullmatch(value):
        raise errors.InvalidRequest(
            "Invalid 'session_id': use 1 to 128 letters, digits and . _ : - (not only dots).",
            param="session_id",
            code="invalid_session_id",
        )
    return value
