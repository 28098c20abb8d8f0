"""``POST /v1/chat/completions``: one Claude Code run per request, streamed or not.

Streaming follows OpenAI's wire format: a first chunk with the role, one chunk per text
delta as it arrives, one per piece of a function call (the first piece of each call
carries its index, id, type and name; the rest, argument fragments), a final chunk with
``finish_reason``, a usage chunk with ``choices: []`` only when
``stream_options.include_usage`` is true, then ``[DONE]``. The
response starts with the first chunk, so an error before any output keeps its HTTP status;
an error after it is sent as a ``data: {"error": ...}`` frame and ends the stream.

Keep-alives and the status (a decision): during a silence the stream sends an SSE comment
every ``keepalive_interval`` seconds (15), since proxies and load balancers cut a
connection idle for 30-60 s, and thinking or tool use can hold the first token for
minutes. A comment starts the response, so it commits a 200: the first one comes only
after ``keepalive_interval`` of silence, and none is sent past the request's deadline.
So any error within the first 15 s without output (every refusal, an upstream error, a
timeout of up to 15 s) keeps its status (504 for a timeout); a run silent for longer has
already answered 200, and its error arrives as an error frame. Holding the status longer
would lose the stream behind a proxy; keep-alives only after the first token would too.

The timeout (``MAX_TIMEOUT``) holds to within 1.5 s, what closing a wedged CLI may take
past the deadline (wrapper.claude: interrupt, SIGTERM after 1 s, SIGKILL 0.5 s later);
one that heeds the interrupt is closed in about 0.1 s.

Everything that can refuse the request (parsing, validation, policy, a session's own
refusals) and the wait for a session's lock come before the run slot: the slot
(``App.gate``, 503 when the server is full, 429 past the client's own cap) is taken just
around the Claude Code run, so a malformed request under full load still gets its 400.

The run's cost is reported as ``cost_usd`` (a non-standard field) on the completion, on
the final chunk and on the usage chunk, and as the ``x-claude-cost-usd`` header when not
streaming.
"""

from __future__ import annotations

import secrets
import time

import attrs
import trio

from wrapper import errors
from wrapper.app import Request
from wrapper.claude import CallSink, Outcome, TextSink
from wrapper.completions import ChatCompletionChunk, to_json
from wrapper.continuation import continuable
from wrapper.convert import ChunkHead, Parsed, Turn, parse, usage_from
from wrapper.http import SSEWriter, header, send_json
from wrapper.schema import ChatRequest
from wrapper.sessions import session_id_of
from wrapper.tools import CallDelta

# Bodies up to this size are parsed on the event loop: a thread hop costs ~100 us, as much
# as parsing a typical 16 KiB body, and the worst 16 KiB (546 one-letter messages) holds
# the loop ~3 ms. Larger bodies go to a worker thread (h11's 16 KiB event cap).
PARSE_INLINE_BYTES = 16 * 1024
# Parsing threads at once: with the GIL more would not parse faster, each holds a body and
# its parsed objects, and two decodes back to back would hold the GIL twice as long.
_parsers = trio.CapacityLimiter(1)


async def _parse(body: bytes, default_model: str) -> Parsed:
    """``convert.parse``, off the event loop for large bodies. Not abandoned on cancel: the
    work is bounded (~3 s measured for the worst body the limits let through, on a busy
    2-core machine), and an abandoned thread would keep its body and its limiter place
    after the request is gone. A cancelled request waits for its parse, then unwinds."""
    if len(body) <= PARSE_INLINE_BYTES:
        return parse(body, default_model)
    return await trio.to_thread.run_sync(parse, body, default_model, limiter=_parsers)


async def create(request: Request) -> None:
    parsed = await _parse(request.body, request.app.config.default_model)
    chat, turn = parsed.request, parsed.turn
    session = session_id_of(chat.session_id, header(request.scope, "x-session-id"))
    head = ChunkHead(
        id=f"chatcmpl-{secrets.token_hex(12)}", created=int(time.time()), model=turn.model
    )
    run = _Run(request, turn, session, parsed.conversation)
    if chat.stream:
        await _stream(request, chat, run, head)
    else:
        await _complete(request, run, head)


@attrs.frozen
class _Run:
    """What one request asks to run: the turn, in a session or not."""

    request: Request
    turn: Turn
    session: str | None
    conversation: list[tuple[str, str]]  # the request's messages, system ones aside

    async def __call__(self, on_text: TextSink | None, on_call: CallSink | None) -> Outcome:
        request = self.request
        app, tenant, turn = request.app, request.tenant, self.turn
        slot = app.gate.slot(request.client)  # entered only just before the run
        if self.session is not None:
            messages = len(self.conversation)
            return await app.sessions.run(
                tenant, self.session, turn, messages, on_text, on_call, slot
            )
        if (
            app.config.session_auto_continue
            and continuable(turn)
            and self.conversation[-1][0] == "user"
        ):
            return await app.continuations.run(
                tenant, self.conversation, turn, on_text, on_call, slot
            )
        async with slot:
            return await app.backend.run(turn, on_text, on_call)


async def _run(
    run: _Run, on_text: TextSink | None, on_call: CallSink | None, deadline: float
) -> Outcome:
    """The run (with its waits for a session lock and a slot) under the request's
    ``deadline`` and the shutdown scope; what it reports goes to the access log and the
    metrics (never content)."""
    request, turn = run.request, run.turn
    app = request.app
    request.log["model"] = turn.model
    with trio.move_on_at(deadline) as timeout:
        with app.run_scope() as stop:
            try:
                outcome = await run(on_text, on_call)
            except errors.TooManyRuns:
                request.log["limited"] = True  # for the metrics: not an upstream 429
                raise
            usage = usage_from(outcome.usage)
            request.log["prompt_tokens"] = usage.prompt_tokens
            request.log["completion_tokens"] = usage.completion_tokens
            if outcome.cost_usd is not None:
                request.log["cost_usd"] = outcome.cost_usd
            return outcome
    if stop.cancelled_caught and not timeout.cancelled_caught:
        raise errors.ShuttingDown(
            "The server is shutting down; the run was stopped.",
            retry_after=errors.SHUTDOWN_RETRY_AFTER,
        )
    raise errors.Timeout(f"Claude Code did not finish within {app.config.timeout:g} seconds.")


async def _complete(request: Request, run: _Run, head: ChunkHead) -> None:
    turn = run.turn
    outcome = await _run(run, None, None, trio.current_time() + request.app.config.timeout)
    completion = head.completion(
        outcome.text,
        outcome.stop_reason,
        usage_from(outcome.usage),
        outcome.cost_usd,
        calls=outcome.calls,
        legacy=turn.calling.legacy,
    )
    headers = dict(request.headers)
    if outcome.cost_usd is not None:
        headers["x-claude-cost-usd"] = f"{outcome.cost_usd:.6f}"
    await send_json(request.send, 200, to_json(completion), headers)


async def _stream(request: Request, chat: ChatRequest, run: _Run, head: ChunkHead) -> None:
    turn = run.turn
    sse = SSEWriter(request.send, request.headers)
    role_sent = False

    started = trio.current_time()
    config = request.app.config
    deadline = started + config.timeout

    async def send(chunk: ChatCompletionChunk) -> None:
        nonlocal role_sent
        if not role_sent:
            role_sent = True
            request.log["ttft"] = round(trio.current_time() - started, 6)
            await sse.event(to_json(head.role_chunk()))
        await sse.event(to_json(chunk))

    async def on_text(text: str) -> None:
        await send(head.text_chunk(text))

    async def on_call(delta: CallDelta) -> None:
        await send(head.call_chunk(delta, turn.calling.legacy))

    failure: errors.WrapperError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sse.keepalive, config.keepalive_interval, deadline)
        try:
            outcome = await _run(run, on_text, on_call, deadline)
        except errors.WrapperError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        if not sse.started:
            raise failure
        await sse.event(errors.openai_envelope(failure))
        await sse.end()
        return
    if not role_sent:
        await sse.event(to_json(head.role_chunk()))
    final = head.final_chunk(
        outcome.stop_reason,
        outcome.cost_usd,
        called=bool(outcome.calls),
        legacy=turn.calling.legacy,
    )
    await sse.event(to_json(final))
    if chat.stream_options is not None and chat.stream_options.include_usage:
        await sse.event(to_json(head.usage_chunk(usage_from(outcome.usage), outcome.cost_usd)))
    await sse.done()
