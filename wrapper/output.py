"""Pure: output control as filters over a run's events (wrapper.events). No I/O.

``StopScanner`` honours a request's stop sequences (OpenAI's ``stop``): the answer ends
just before the first occurrence of any of them, wherever the stream's pieces split it.
It holds back only what could still become a stop sequence (the longest end of the text
so far that begins one), so no stop text ever goes out, and everything else goes out as
soon as it arrives. Once ``stopped``, the consumer ends the run (leaving the backend's
context interrupts it) and answers with ``STOPPED``: the usage and cost of a run cut short
are not reported by Claude Code (its result after an interrupt counts 0 tokens), so they
are unknown, not zero.
"""

from __future__ import annotations

from wrapper.events import Event, Finished, Restarted, TextDelta

# The ending of a run cut at a stop sequence.
STOPPED = Finished(stop_reason="stop_sequence", usage=None, cost_usd=None, session_id=None)


class StopScanner:
    """Feed it every event of a run; it passes on what the client may see."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        assert all(stops), "an empty stop sequence is refused by the request's parser"
        self.stops = stops
        self.held = ""  # text that may be the start of a stop sequence
        self.stopped = False

    def feed(self, event: Event) -> list[Event]:
        if self.stopped:
            return []
        match event:
            case TextDelta(text):
                out = self._scan(self.held + text)
                return [TextDelta(out)] if out else []
            case Restarted(text):
                self.held = ""
                return [Restarted(self._scan(text))]
            case Finished():
                held, self.held = self.held, ""
                return [TextDelta(held), event] if held else [event]
        return [event]

    def _scan(self, text: str) -> str:
        """What of ``text`` may go out now; keeps the rest in ``held``."""
        found = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.stopped, self.held = True, ""
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
