"""``POST /v1/chat/completions``: one Claude Code run per request, streamed or not.

The flow, top to bottom in ``Completions``: parse the body (wrapper.convert), plan the run
(wrapper.plan, pure: every refusal that depends only on the request), open its place
(wrapper.placement: a session's lock, its caps and transcript), take a run slot (503 when
the server is full, 429 past the client's own cap), run it (wrapper.claude: events), and
encode the events (wrapper.encode). So a malformed request under full load still gets its
400, and a session turn waiting for its lock holds no slot.

Streaming follows OpenAI's wire format: a first chunk with the role, one chunk per text
delta as it arrives, one per piece of a function call (the first piece of each call
carries its index, id, type and name; the rest, argument fragments), a final chunk with
``finish_reason``, a usage chunk with ``choices: []`` only when
``stream_options.include_usage`` is true, then ``[DONE]``. The response starts with the
first chunk, so an error before any output keeps its HTTP status; an error after it is
sent as a ``data: {"error": ...}`` frame and ends the stream. The final chunk goes out
once the run is recorded (a session's turn, a conversation to continue), so a client's
next request always finds it.

Keep-alives and the status (a decision): once Claude has begun to answer (``Began``: the
API took the turn), a silence of ``keepalive_interval`` seconds (15) gets an SSE comment,
since proxies and load balancers cut a connection idle for 30-60 s, and thinking or tool
use can hold the first token for minutes. A comment starts the response, so it commits a
200; none is sent before Claude answers (waits for a lock or a slot, the CLI's start, the
API's own retries of a 429 or 529), so an error there keeps its status whatever it took,
nor past the request's deadline, so a timeout before any output is a 504.

The timeout (``MAX_TIMEOUT``) holds to within 1.5 s, what closing a wedged CLI may take
past the deadline (wrapper.claude.process: interrupt, SIGTERM after 1 s, SIGKILL 0.5 s
later); one that heeds the interrupt is closed in about 0.1 s.

The run's cost is reported as ``cost_usd`` (a non-standard field) on the completion, on
the final chunk and on the usage chunk, and as the ``x-claude-cost-usd`` header when not
streaming.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from wrapper import errors, events, plan
from wrapper.app import Request
from wrapper.claude.backend import Backend
from wrapper.completions import to_json
from wrapper.config import Config
from wrapper.convert import Parsed, parse
from wrapper.drain import Drain
from wrapper.encode import ChatEncoder
from wrapper.events import Answer, Event, Finished
from wrapper.http import SSEWriter, header, send_json
from wrapper.limits import RunGate
from wrapper.output import Output
from wrapper.placement import Placement

# Bodies up to this size are parsed on the event loop: a thread hop costs ~100 us, as much
# as parsing a typical 16 KiB body, and the worst 16 KiB (546 one-letter messages) holds
# the loop ~3 ms. Larger bodies go to a worker thread (h11's 16 KiB event cap).
PARSE_INLINE_BYTES = 16 * 1024
# Parsing threads at once: with the GIL more would not parse faster, each holds a body and
# its parsed objects, and two decodes back to back would hold the GIL twice as long.
_parsers = trio.CapacityLimiter(1)

OnEvent = Callable[[Event], Awaitable[None]]


async def _parse(body: bytes, default_model: str, session_header: str | None) -> Parsed:
    """``convert.parse``, off the event loop for large bodies. Not abandoned on cancel: the
    work is bounded (~3 s measured for the worst body the limits let through, on a busy
    2-core machine), and an abandoned thread would keep its body and its limiter place
    after the request is gone. A cancelled request waits for its parse, then unwinds."""
    if len(body) <= PARSE_INLINE_BYTES:
        return parse(body, default_model, session_header)
    return await trio.to_thread.run_sync(
        parse, body, default_model, session_header, limiter=_parsers
    )


@attrs.frozen
class Completions:
    """The handler, with the services it uses: parse, plan, place, slot, run, encode."""

    config: Config
    placement: Placement
    gate: RunGate
    backend: Backend
    drain: Drain

    async def __call__(self, request: Request) -> None:
        config = self.config
        session_header = header(request.scope, "x-session-id")
        parsed = await _parse(request.body, config.default_model, session_header)
        planned = plan.plan(parsed.ask, config)
        request.log["model"] = planned.turn.model
        encoder = ChatEncoder(
            id=f"chatcmpl-{secrets.token_hex(12)}",
            created=int(time.time()),
            model=planned.turn.model,
            legacy=parsed.legacy,
            reasoning=config.show_reasoning,
        )
        deadline = trio.current_time() + config.timeout
        if parsed.request.stream:
            options = parsed.request.stream_options
            include_usage = bool(options and options.include_usage)
            await self._stream(request, planned, encoder, deadline, include_usage)
        else:
            answer, finished = await self._run(request, planned, deadline)
            await _complete(request, encoder, answer, finished)

    async def _run(
        self, request: Request, planned: plan.Plan, deadline: float, on_event: OnEvent | None = None
    ) -> tuple[Answer, Finished]:
        """The planned run, in its place, in a run slot, under the request's ``deadline``
        and the shutdown scope; each event goes to ``on_event``, which may end the run by
        raising. What it reports goes to the access log and the metrics (never content)."""
        answer = Answer()
        output = Output(planned.stops, planned.max_tokens)
        with trio.move_on_at(deadline) as timeout, self.drain.run_scope() as stop:
            async with self.placement.open(planned, request.tenant) as site:
                async with (
                    _slot(self.gate, request),
                    self.backend.run(site.turn, site.place) as run,
                ):
                    async for event in run:
                        for shown in output.feed(event):
                            answer.add(shown)
                            if isinstance(shown, events.Failed):
                                raise shown.error
                            if on_event is not None:
                                await on_event(shown)
                        if output.ending is not None:  # leaving interrupts the run at once
                            answer.add(output.ending)
                            break
                finished = answer.finished
                assert finished is not None  # the run's last event, if not Failed
                site.keep(answer, finished)
            if finished.usage is not None:
                request.log["prompt_tokens"] = finished.usage.all_input
                request.log["completion_tokens"] = finished.usage.output_tokens
            if finished.cost_usd is not None:
                request.log["cost_usd"] = finished.cost_usd
            return answer, finished
        if stop.cancelled_caught and not timeout.cancelled_caught:
            raise errors.ShuttingDown(
                "The server is shutting down; the run was stopped.",
                retry_after=errors.SHUTDOWN_RETRY_AFTER,
            )
        raise errors.Timeout(f"Claude Code did not finish within {self.config.timeout:g} seconds.")

    async def _stream(
        self,
        request: Request,
        planned: plan.Plan,
        encoder: ChatEncoder,
        deadline: float,
        include_usage: bool,
    ) -> None:
        """Each delta as a chunk as it comes; keep-alive comments during silences once Claude
        answers; the final chunk (and usage) once the run is over and recorded."""
        sse = SSEWriter(request.send, request.headers)
        started = trio.current_time()
        role_sent = False
        failure: errors.WrapperError | None = None

        async with trio.open_nursery() as nursery:

            async def on_event(event: Event) -> None:
                nonlocal role_sent
                if isinstance(event, events.Began):  # keep-alives only once Claude answers
                    nursery.start_soon(sse.keepalive, self.config.keepalive_interval, deadline)
                    return
                if isinstance(event, events.Restarted):  # what was sent cannot be taken back
                    raise errors.UpstreamError(
                        "The upstream stream broke after partial output and Claude Code"
                        " answered again; the partial answer already sent is invalid.",
                        code="stream_restarted",
                    )
                chunk = encoder.delta_chunk(event)
                if chunk is None:
                    return
                if not role_sent:
                    role_sent = True
                    request.log["ttft"] = round(trio.current_time() - started, 6)
                    await sse.event(to_json(encoder.role_chunk()))
                await sse.event(to_json(chunk))

            try:
                answer, finished = await self._run(request, planned, deadline, on_event)
            except errors.WrapperError as exc:  # raised outside the nursery: not a group
                failure = exc
            nursery.cancel_scope.cancel()  # the keep-alives
        if failure is not None:
            if not sse.started:  # nothing sent: the error keeps its status
                raise failure
            await sse.event(errors.openai_envelope(failure))
            await sse.end()
            return
        if not role_sent:
            await sse.event(to_json(encoder.role_chunk()))
        await sse.event(to_json(encoder.final_chunk(finished, called=bool(answer.calls))))
        if include_usage:
            await sse.event(to_json(encoder.usage_chunk(finished)))
        await sse.done()


@asynccontextmanager
async def _slot(gate: RunGate, request: Request) -> AsyncIterator[None]:
    """A run slot of the client's (503 when the server is full, 429 past its own cap)."""
    try:
        async with gate.slot(request.client):
            yield
    except errors.TooManyRuns:
        request.log["limited"] = True  # for the metrics: not an upstream 429
        raise


async def _complete(
    request: Request, encoder: ChatEncoder, answer: Answer, finished: Finished
) -> None:
    headers = dict(request.headers)
    if finished.cost_usd is not None:
        headers["x-claude-cost-usd"] = f"{finished.cost_usd:.6f}"
    await send_json(request.send, 200, to_json(encoder.completion(answer, finished)), headers)
