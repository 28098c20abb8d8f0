"""``POST /v1/chat/completions``: one Claude Code run per request, streamed or not.

Streaming follows OpenAI's wire format: a first chunk with the role, one chunk per text
delta as it arrives, one per piece of a function call (the first piece of each call
carries its index, id, type and name; the rest, argument fragments), a final chunk with
``finish_reason``, a usage chunk with ``choices: []`` only when
``stream_options.include_usage`` is true, then ``[DONE]``. The
response starts with the first chunk, so an error before any output keeps its HTTP status;
an error after it is sent as a ``data: {"error": ...}`` frame and ends the stream.

Everything that can refuse the request (parsing, validation, policy, a session's own
refusals) and the wait for a session's lock come before the run slot: the slot
(``App.gate``, 503 when the server is full, 429 past the client's own cap) is taken just
around the Claude Code run, so a malformed request under full load still gets its 400.

The run's cost is reported as ``cost_usd`` (a non-standard field) on the completion, on
the final chunk and on the usage chunk, and as the ``x-claude-cost-usd`` header when not
streaming.
"""

from __future__ import annotations

import json
import secrets
import time

import attrs
import trio

from wrapper import errors
from wrapper.app import Request
from wrapper.claude import CallSink, Outcome, TextSink
from wrapper.continuation import continuable
from wrapper.convert import ChunkHead, Turn, conversation, to_turn, usage_from
from wrapper.http import SSEWriter, header, send_json
from wrapper.schema import ChatCompletionChunk, ChatRequest, parse_chat_request, to_json
from wrapper.sessions import session_id_of
from wrapper.tools import CallDelta


async def create(request: Request) -> None:
    try:
        body = json.loads(request.body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidRequest(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from exc
    chat = parse_chat_request(body)
    session = session_id_of(chat.session_id, header(request.scope, "x-session-id"))
    turn = to_turn(chat, request.app.config.default_model)
    head = ChunkHead(
        id=f"chatcmpl-{secrets.token_hex(12)}", created=int(time.time()), model=turn.model
    )
    run = _Run(request, turn, session, conversation(chat))
    if chat.stream:
        await _stream(request, chat, run, head)
    else:
        await _complete(request, run, head)


def _refuse_constant(name: str) -> object:
    # Python's json accepts NaN and Infinity; JSON (RFC 8259) does not.
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


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


async def _run(run: _Run, on_text: TextSink | None, on_call: CallSink | None) -> Outcome:
    """The run (with its waits for a session lock and a slot) under the request timeout
    and the shutdown scope; what it reports goes to the access log and the metrics (never
    content)."""
    request, turn = run.request, run.turn
    app = request.app
    request.log["model"] = turn.model
    with trio.move_on_after(app.config.timeout) as timeout:
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
            "The server is shutting down; the run was stopped.", retry_after=5
        )
    raise errors.Timeout(f"Claude Code did not finish within {app.config.timeout:g} seconds.")


async def _complete(request: Request, run: _Run, head: ChunkHead) -> None:
    turn = run.turn
    outcome = await _run(run, None, None)
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
        nursery.start_soon(sse.keepalive, request.app.config.keepalive_interval)
        try:
            outcome = await _run(run, on_text, on_call)
        except errors.WrapperError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        if not sse.started:
            raise failure
        await sse.event(failure.envelope())
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
