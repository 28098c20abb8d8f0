"""What a Claude Code run reports, as it happens: the one vocabulary between the backend
(wrapper.claude) and everything above it. Frozen values in Claude's own terms (``toolu_``
ids, Anthropic stop reasons and usage); the front doors turn them into their wire shapes.

A run's events: ``Began`` once Claude starts to answer; any number of ``TextDelta``,
``ReasoningDelta``, ``CallStarted``, ``CallArguments``, ``Restarted`` and ``MessageEnd``
in the order Claude produced them; then
exactly one of ``Finished`` or ``Failed``, then nothing. A consumer may stop reading at
any event; leaving the backend's context then stops the run (wrapper.claude).

``Answer`` is the one fold over them: the text, the calls and the ending of a run, for a
non-streamed answer and for whatever must be recorded about it (sessions, continuations).
"""

from __future__ import annotations

import attrs

from wrapper.errors import WrapperError


@attrs.frozen
class Began:
    """Claude began its answer: the API took the turn and streams it (the first
    ``message_start``). Before it, the run may still wait on the CLI or the API's retries."""


@attrs.frozen
class TextDelta:
    """A piece of the assistant's answer."""

    text: str


@attrs.frozen
class ReasoningDelta:
    """A piece of Claude's thinking, apart from the answer."""

    text: str


@attrs.frozen
class CallStarted:
    """Claude began a call of one of the client's functions: the ``index``-th call of the
    run (from 0), its tool_use ``id`` and the function's ``name``."""

    index: int
    id: str
    name: str


@attrs.frozen
class CallArguments:
    """A fragment of the JSON arguments of call ``index``; the fragments of one call, in
    order, are its whole arguments."""

    index: int
    json: str


@attrs.frozen
class Restarted:
    """The upstream stream broke and Claude Code answered again, whole: the text streamed
    so far is void, and ``text`` is the answer so far as Claude Code confirmed it. A
    consumer that already passed text on cannot take it back (a streamed answer fails);
    one that buffers takes ``text`` instead."""

    text: str


@attrs.frozen
class Usage:
    """Token counts as the Anthropic API reports them (input apart from the cache), and
    the thinking tokens among the output when Claude Code reports a count: it reports 0
    for answers that did think (measured with CLI 2.1.332), so 0 is not a count."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    thinking_tokens: int | None = None

    @classmethod
    def from_raw(cls, raw: dict[str, object] | None) -> Usage:
        """From the CLI's result ``usage``; a missing or odd count is 0 (thinking: None)."""
        raw = raw or {}

        def count(key: str) -> int:
            value = raw.get(key)
            return value if type(value) is int else 0

        details = raw.get("output_tokens_details")
        thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
        return cls(
            count("input_tokens"),
            count("output_tokens"),
            count("cache_creation_input_tokens"),
            count("cache_read_input_tokens"),
            thinking if type(thinking) is int and thinking > 0 else None,
        )

    def __add__(self, other: Usage) -> Usage:
        """The counts of two messages together (thinking: unknown unless both know it)."""
        a, b = self.thinking_tokens, other.thinking_tokens
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            a + b if a is not None and b is not None else None,
        )

    @property
    def all_input(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@attrs.frozen
class MessageEnd:
    """One upstream message of the run (one API call) ended: its stop reason and usage
    as the stream reported them (input at its start, output at its end). Claude Code may
    go on with another message; what ends the run is ``Finished``."""

    stop_reason: str | None
    usage: Usage


@attrs.frozen
class Finished:
    """The run ended with an answer. ``stop_reason`` is Claude's (``tool_use`` when it
    ended at the client's calls); ``session_id`` is the Claude session that holds it.
    Usage, cost and session are None when unknown: a run the server cut short at a stop
    sequence (wrapper.output) has none reported. ``structured_output``: the value Claude
    Code accepted as the answer of a run that asked for one (wrapper.structured), else
    None."""

    stop_reason: str | None
    usage: Usage | None
    cost_usd: float | None
    session_id: str | None
    structured_output: object = None


@attrs.frozen
class Failed:
    """The run ended without an answer; ``error`` says why, as the client will see it."""

    error: WrapperError


Event = (
    Began
    | TextDelta
    | ReasoningDelta
    | CallStarted
    | CallArguments
    | Restarted
    | MessageEnd
    | Finished
    | Failed
)
END = (Finished, Failed)


@attrs.frozen
class Call:
    """A whole call of a client's function: tool_use id, name and JSON arguments."""

    id: str
    name: str
    arguments: str


@attrs.define
class Answer:
    """The fold of one run's events: ``add`` each; ``ending`` is set by the last one."""

    text: str = ""
    reasoning: str = ""
    calls: list[Call] = attrs.Factory(list)
    ending: Finished | Failed | None = None

    def add(self, event: Event) -> None:
        match event:
            case TextDelta(text):
                self.text += text
            case ReasoningDelta(text):
                self.reasoning += text
            case CallStarted(index, id_, name):
                assert index == len(self.calls)
                self.calls.append(Call(id_, name, ""))
            case CallArguments(index, fragment):
                call = self.calls[index]
                self.calls[index] = attrs.evolve(call, arguments=call.arguments + fragment)
            case Restarted(text):
                self.text = text
            case Finished() | Failed():
                self.ending = event

    @property
    def finished(self) -> Finished | None:
        return self.ending if isinstance(self.ending, Finished) else None
