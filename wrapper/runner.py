"""``Runner``: a planned run (wrapper.plan), carried out the same way for every front door.

In order: its place (wrapper.placement: a session's lock, its caps and transcript), a run
slot (wrapper.limits: 503 when the server is full, 429 past the client's own cap), the run
(wrapper.claude: events) through the plan's output filters (wrapper.output), and the
record of the answer (a session's turn, a conversation to continue) before it is returned.
The request's deadline and the shutdown scope bound all of it.

A door turns its request into a plan and the events into its own wire shape; nothing in
between is a door's business. ``streamed`` adds what every streaming door needs: once
Claude has begun to answer (``Began``: the API took the turn), an SSE comment after each
``keepalive_interval`` of silence, since proxies cut a connection idle for 30-60 s and
thinking or tool use can hold the first token for minutes. A comment starts the response
(it commits a 200), so none is sent before Claude answers (waits for a lock or a slot, the
CLI's start, the API's own retries), nor past the deadline: an error there keeps its
status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import trio

from wrapper import errors, events, plan
from wrapper.app import Request
from wrapper.claude.backend import Backend
from wrapper.config import Config
from wrapper.drain import Drain
from wrapper.events import Answer, Event, Finished
from wrapper.http import SSEWriter
from wrapper.limits import RunGate
from wrapper.output import Output
from wrapper.placement import Placement

OnEvent = Callable[[Event], Awaitable[None]]
OnChoiceEvent = Callable[[int, Event], Awaitable[None]]
T = TypeVar("T")

# Bodies up to this size are parsed on the event loop: a thread hop costs ~100 us, as much
# as parsing a typical 16 KiB body, and the worst 16 KiB (546 one-letter messages) holds
# the loop ~3 ms. Larger bodies go to a worker thread (h11's 16 KiB event cap).
PARSE_INLINE_BYTES = 16 * 1024
# Parsing threads at once: with the GIL more would not parse faster, each holds a body and
# its parsed objects, and two decodes back to back would hold the GIL twice as long.
_parsers = trio.CapacityLimiter(1)


async def off_loop(parse: Callable[..., T], body: bytes, *args: Any) -> T:
    """A door's ``parse(body, *args)``, off the event loop for large bodies. Not abandoned
    on cancel: the work is bounded (~3 s measured for the worst body the limits let
    through, on a busy 2-core machine), and an abandoned thread would keep its body and
    its limiter place after the request is gone. A cancelled request waits for its
    parse, then unwinds."""
    if len(body) <= PARSE_INLINE_BYTES:
        return parse(body, *args)
    return await trio.to_thread.run_sync(parse, body, *args, limiter=_parsers)


@attrs.frozen
class Runner:
    """The services a run uses, built once (wrapper.server) and shared by the doors."""

    config: Config
    placement: Placement
    gate: RunGate
    backend: Backend
    drain: Drain

    async def run(
        self, request: Request, planned: plan.Plan, deadline: float, on_event: OnEvent | None = None
    ) -> tuple[Answer, Finished]:
        """The planned run, in its place, in a run slot, under ``deadline`` and the
        shutdown scope; each event the client may see goes to ``on_event``, which may end
        the run by raising. What it reports goes to the access log (never content)."""
        assert planned.n == 1, "runs() gives several answers"
        relay = (lambda _, event: on_event(event)) if on_event is not None else None
        (result,) = await self.runs(request, planned, deadline, relay)
        return result

    async def runs(
        self,
        request: Request,
        planned: plan.Plan,
        deadline: float,
        on_event: OnChoiceEvent | None = None,
    ) -> list[tuple[Answer, Finished]]:
        """The plan's ``n`` runs at once, their slots taken together; ``on_event`` gets
        each event with the index of its run. The first failure fails them all."""
        with trio.move_on_at(deadline) as timeout, self.drain.run_scope() as stop:
            if planned.n == 1:  # the slot after the place: a session's lock holds none
                results = [await self._one(request, planned, 0, on_event, slot=True)]
            else:
                async with _slot(self.gate, request, planned.n):
                    results = await self._together(request, planned, on_event)
            usages = [f.usage for _, f in results]
            if all(u is not None for u in usages):
                request.log["prompt_tokens"] = sum(u.all_input for u in usages if u)
                request.log["completion_tokens"] = sum(u.output_tokens for u in usages if u)
            costs = [f.cost_usd for _, f in results if f.cost_usd is not None]
            if costs:
                request.log["cost_usd"] = sum(costs)
            return results
        if stop.cancelled_caught and not timeout.cancelled_caught:
            raise errors.ShuttingDown(
                "The server is shutting down; the run was stopped.",
                retry_after=errors.SHUTDOWN_RETRY_AFTER,
            )
        raise errors.Timeout(f"Claude Code did not finish within {self.config.timeout:g} seconds.")

    async def _together(
        self, request: Request, planned: plan.Plan, on_event: OnChoiceEvent | None
    ) -> list[tuple[Answer, Finished]]:
        results: dict[int, tuple[Answer, Finished]] = {}
        failure: errors.WrapperError | None = None
        async with trio.open_nursery() as nursery:

            async def one(index: int) -> None:
                nonlocal failure
                try:
                    results[index] = await self._one(request, planned, index, on_event)
                except errors.WrapperError as exc:  # the first one ends them all
                    failure = failure or exc
                    nursery.cancel_scope.cancel()

            for index in range(planned.n):
                nursery.start_soon(one, index)
        if failure is not None:
            raise failure
        return [results[index] for index in range(planned.n)]

    async def _one(
        self,
        request: Request,
        planned: plan.Plan,
        index: int,
        on_event: OnChoiceEvent | None,
        slot: bool = False,
    ) -> tuple[Answer, Finished]:
        """One run of the plan in a place of its own (and a slot of its own with ``slot``),
        through the output filters, recorded before it returns."""
        answer = Answer()
        output = Output(planned.stops, planned.max_tokens, planned.turn.output_schema)
        async with self.placement.open(planned, request.tenant) as site:
            async with (
                _slot(self.gate, request) if slot else _nothing(),
                self.backend.run(site.turn, site.place) as run,
            ):
                async for event in run:
                    for shown in output.feed(event):
                        answer.add(shown)
                        if isinstance(shown, events.Failed):
                            raise shown.error
                        if on_event is not None:
                            await on_event(index, shown)
                    if output.ending is not None:  # leaving interrupts the run at once
                        answer.add(output.ending)
                        break
            finished = answer.finished
            assert finished is not None  # the run's last event, if not Failed
            site.keep(answer, finished)
        return answer, finished

    async def streamed(
        self,
        request: Request,
        planned: plan.Plan,
        deadline: float,
        sse: SSEWriter,
        on_event: OnEvent,
    ) -> tuple[Answer, Finished]:
        """``run``, with keep-alive comments on ``sse`` during silences once Claude
        answers. A failure is raised as it is (never as an exception group); whether
        anything went out yet is ``sse.started``."""
        assert planned.n == 1, "streamed_runs() gives several answers"
        (result,) = await self.streamed_runs(
            request, planned, deadline, sse, lambda _, event: on_event(event)
        )
        return result

    async def streamed_runs(
        self,
        request: Request,
        planned: plan.Plan,
        deadline: float,
        sse: SSEWriter,
        on_event: OnChoiceEvent,
    ) -> list[tuple[Answer, Finished]]:
        """``runs``, with the keep-alives of ``streamed``."""
        failure: errors.WrapperError | None = None
        began = False
        async with trio.open_nursery() as nursery:

            async def relay(index: int, event: Event) -> None:
                nonlocal began
                if isinstance(event, events.Began) and not began:
                    began = True
                    nursery.start_soon(sse.keepalive, self.config.keepalive_interval, deadline)
                await on_event(index, event)

            try:
                results = await self.runs(request, planned, deadline, relay)
            except errors.WrapperError as exc:  # raised outside the nursery: not a group
                failure = exc
            nursery.cancel_scope.cancel()  # the keep-alives
        if failure is not None:
            raise failure
        return results


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def _slot(gate: RunGate, request: Request, count: int = 1) -> AsyncIterator[None]:
    """Run slots of the client's (503 when the server is full, 429 past its own cap)."""
    try:
        async with gate.slot(request.client, count):
            yield
    except errors.TooManyRuns:
        request.log["limited"] = True  # for the metrics: not an upstream 429
        raise
