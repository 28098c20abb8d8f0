"""Shutdown's hold on the work in flight: once draining, new requests are refused (by the
app) and every Claude Code run, and its waits, gets ``grace`` seconds to finish."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Drain:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self._runs: set[trio.CancelScope] = set()
        self._deadline = math.inf

    @contextmanager
    def run_scope(self) -> Iterator[trio.CancelScope]:
        """A scope for one Claude Code run (and its waits) that shutdown can cut short."""
        scope = trio.CancelScope(deadline=self._deadline)
        self._runs.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._runs.discard(scope)

    def begin(self) -> None:
        """Refuse new requests; give runs in flight ``grace`` seconds to finish."""
        self.draining = True
        self._deadline = trio.current_time() + self.grace
        for scope in self._runs:
            scope.deadline = min(scope.deadline, self._deadline)
