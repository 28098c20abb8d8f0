"""``POST /v1/chat/completions``: one Claude Code run per request, streamed or not.

The flow, top to bottom in ``Completions``: parse the body (wrapper.convert), plan the run
(wrapper.plan, pure: every refusal that depends only on the request), run it
(wrapper.runner: its place, a run slot, the events), and encode the events
(wrapper.encode). So a malformed request under full load still gets its 400, and a
session turn waiting for its lock holds no slot.

Streaming follows OpenAI's wire format: a first chunk with the role, one chunk per text
delta as it arrives, one per piece of a function call (the first piece of each call
carries its index, id, type and name; the rest, argument fragments), a final chunk with
``finish_reason``, a usage chunk with ``choices: []`` only when
``stream_options.include_usage`` is true, then ``[DONE]``. The response starts with the
first chunk, so an error before any output keeps its HTTP status; an error after it is
sent as a ``data: {"error": ...}`` frame and ends the stream. The final chunk goes out
once the run is recorded (a session's turn, a conversation to continue), so a client's
next request always finds it.

Keep-alives (wrapper.runner): SSE comments during silences once Claude answers, none
before, so an error before Claude answers keeps its status whatever it took, and a timeout
before any output is a 504.

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

import attrs
import trio

from wrapper import errors, events, plan
from wrapper.app import Request
from wrapper.completions import to_json
from wrapper.config import Config
from wrapper.convert import parse
from wrapper.encode import ChatEncoder
from wrapper.events import Answer, Event, Finished
from wrapper.http import SSEWriter, header, send_json
from wrapper.runner import Runner, off_loop


@attrs.frozen
class Completions:
    """The handler: parse and plan here; the run is the runner's (wrapper.runner)."""

    config: Config
    runner: Runner

    async def __call__(self, request: Request) -> None:
        config = self.config
        session_header = header(request.scope, "x-session-id")
        parsed = await off_loop(parse, request.body, config.default_model, session_header)
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
            results = await self.runner.runs(request, planned, deadline)
            await _complete(request, encoder, results)

    async def _stream(
        self,
        request: Request,
        planned: plan.Plan,
        encoder: ChatEncoder,
        deadline: float,
        include_usage: bool,
    ) -> None:
        """Each delta as a chunk as it comes; the final chunk (and usage) once the run is
        over and recorded."""
        sse = SSEWriter(request.send, request.headers)
        started = trio.current_time()
        role_sent: set[int] = set()  # the choices whose role chunk went out

        async def role(choice: int) -> None:
            if choice not in role_sent:
                role_sent.add(choice)
                request.log.setdefault("ttft", round(trio.current_time() - started, 6))
                await sse.event(to_json(encoder.role_chunk(choice)))

        async def on_event(choice: int, event: Event) -> None:
            if isinstance(event, events.Restarted):  # what was sent cannot be taken back
                raise errors.UpstreamError(
                    "The upstream stream broke after partial output and Claude Code"
                    " answered again; the partial answer already sent is invalid.",
                    code="stream_restarted",
                )
            chunk = encoder.delta_chunk(event, choice)
            if chunk is not None:
                await role(choice)
                await sse.event(to_json(chunk))

        try:
            results = await self.runner.streamed_runs(request, planned, deadline, sse, on_event)
        except errors.WrapperError as failure:
            if not sse.started:  # nothing sent: the error keeps its status
                raise
            await sse.event(errors.openai_envelope(failure))
            await sse.end()
            return
        for choice, (answer, finished) in enumerate(results):
            await role(choice)
            final = encoder.final_chunk(finished, called=bool(answer.calls), choice=choice)
            await sse.event(to_json(final))
        if include_usage:
            await sse.event(to_json(encoder.usage_chunk(*(f for _, f in results))))
        await sse.done()


async def _complete(
    request: Request, encoder: ChatEncoder, results: list[tuple[Answer, Finished]]
) -> None:
    completion = encoder.completion(*results)
    headers = dict(request.headers)
    if completion.cost_usd is not None:
        headers["x-claude-cost-usd"] = f"{completion.cost_usd:.6f}"
    await send_json(request.send, 200, to_json(completion), headers)
