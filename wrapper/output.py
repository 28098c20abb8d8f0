"""Pure: output control as filters over a run's events (wrapper.events). No I/O.

``Output`` chains the filters a plan asks for; once one sets its ``ending``, the consumer
ends the run (leaving the backend's context interrupts it) and answers with that ending.

``TokenBudget`` honours ``max_tokens``: the run's CLI is also given the limit for each API
call (``CLAUDE_CODE_MAX_OUTPUT_TOKENS``), so the API stops the message at exactly that many
tokens, thinking included; Claude Code would go on with another call by itself, so the
budget ends the run when a message ends at ``max_tokens`` or the run's output reaches the
limit, with the usage the stream reported (``finish_reason: length``).

``Structured`` honours ``response_format``: the answer is the structured output Claude
Code accepted, as JSON, checked against the schema (wrapper.structured); a run that ends
without one (Claude answered in prose after the CLI asked it again) fails with a 502
``structured_output_failed`` rather than answer what the client cannot parse.

``StopScanner`` honours a request's stop sequences (OpenAI's ``stop``): the answer ends
just before the first occurrence of any of them, wherever the stream's pieces split it.
It holds back only what could still become a stop sequence (the longest end of the text
so far that begins one), so no stop text ever goes out, and everything else goes out as
soon as it arrives. Its ending is ``STOPPED``: the usage and cost of a run cut short
mid-message are not reported by Claude Code (its result after an interrupt counts 0
tokens), so they are unknown, not zero.
"""

from __future__ import annotations

from typing import Any

from wrapper import errors, structured
from wrapper.events import Event, Failed, Finished, MessageEnd, Restarted, TextDelta, Usage

# The ending of a run cut at a stop sequence.
STOPPED = Finished(stop_reason="stop_sequence", usage=None, cost_usd=None, session_id=None)


class Output:
    """The filters of one run: feed it every event; it passes on what the client may see,
    and ``ending`` says when the run must end, and how."""

    def __init__(
        self,
        stops: tuple[str, ...] = (),
        max_tokens: int | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.filters: list[Structured | StopScanner | TokenBudget] = []
        if schema is not None:
            self.filters.append(Structured(schema))
        if stops:
            self.filters.append(StopScanner(stops))
        if max_tokens is not None:
            self.filters.append(TokenBudget(max_tokens))

    @property
    def ending(self) -> Finished | None:
        return next((f.ending for f in self.filters if f.ending is not None), None)

    def feed(self, event: Event) -> list[Event]:
        events = [event]
        for one in self.filters:
            events = [out for e in events for out in one.feed(e)]
        if self.ending not in (None, STOPPED):  # the answer ends here: held text is in it
            held = [f.flush() for f in self.filters if isinstance(f, StopScanner)]
            events = [TextDelta(text) for text in held if text] + events
        return events


class Structured:
    """The answer of a run that asked for structured output: the value Claude Code
    accepted (``Finished.structured_output``), checked against the schema once more, as
    JSON text just before the end. Claude's text beside it is not the answer: dropped."""

    ending = None  # never ends a run itself

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def feed(self, event: Event) -> list[Event]:
        match event:
            case TextDelta() | Restarted():
                return []
            case Finished(structured_output=None, stop_reason=reason) if reason != "tool_use":
                return [_failed("Claude answered without the structured output asked for.")]
            case Finished(structured_output=value) if value is not None:
                problem = structured.problem(value, self.schema)
                if problem is not None:
                    return [_failed(f"Claude's structured output does not match: {problem}")]
                return [TextDelta(structured.text(value)), event]
        return [event]


def _failed(message: str) -> Failed:
    return Failed(errors.UpstreamError(message, code="structured_output_failed"))


class TokenBudget:
    """Ends the run once its output reaches ``limit`` tokens, as the stream counts them."""

    def __init__(self, limit: int) -> None:
        assert limit >= 1, "a limit under 1 is refused by the request's parser"
        self.limit = limit
        self.spent = Usage()  # of the messages that ended
        self.ending: Finished | None = None

    def feed(self, event: Event) -> list[Event]:
        if self.ending is not None:
            return []
        if isinstance(event, MessageEnd):
            self.spent += event.usage
            if event.stop_reason == "max_tokens" or self.spent.output_tokens >= self.limit:
                self.ending = Finished("max_tokens", self.spent, None, None)
        return [event]


class StopScanner:
    """Ends the answer before the first stop sequence; passes on what may be shown."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        assert all(stops), "an empty stop sequence is refused by the request's parser"
        self.stops = stops
        self.held = ""  # text that may be the start of a stop sequence
        self.ending: Finished | None = None

    def feed(self, event: Event) -> list[Event]:
        if self.ending is not None:
            return []
        match event:
            case TextDelta(text):
                out = self._scan(self.held + text)
                return [TextDelta(out)] if out else []
            case Restarted(text):
                self.held = ""
                return [Restarted(self._scan(text))]
            case Finished():
                held = self.flush()
                return [TextDelta(held), event] if held else [event]
        return [event]

    def flush(self) -> str:
        """The text held back: none of it is a stop sequence once the answer ends."""
        held, self.held = self.held, ""
        return held

    def _scan(self, text: str) -> str:
        """What of ``text`` may go out now; keeps the rest in ``held``."""
        found = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.ending, self.held = STOPPED, ""
            return text[: min(found)]
        keep = max((_overlap(text, stop) for stop in self.stops), default=0)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that is a proper start of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0
