"""The Trio adapter around one Claude Code process: connect, query, relay its messages
through the reader as events, interrupt, close (or kill), and SDK errors as ours.

- A run that ends unfinished (its consumer left: client gone, timeout, shutdown, a stop
  the consumer decided) is stopped with ``interrupt()``, shielded and bounded, before the
  process is closed: measured here, this aborts the upstream stream and frees the CLI in
  about 0.1 s, where plain cancellation lets the CLI finish its answer and takes about
  4.5 s to close. A CLI still open ``CLOSE_TIMEOUT`` after the run was stopped (wedged)
  gets SIGTERM, and SIGKILL ``KILL_TIMEOUT`` later: closing never takes more than 1.5 s.
- SDK and OS exceptions of the SDK's calls become wrapper.errors (``map_errors``), their
  raw text (paths, addresses) in the log only, and reach the consumer as ``Failed``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from typing import cast

import trio
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    CLINotFoundError,
    Message,
)

from wrapper import errors, upstream
from wrapper.claude.gate import Gate
from wrapper.claude.reader import Reader
from wrapper.events import Event, Failed, Finished

log = logging.getLogger(__name__)

# interrupt() answered in ~30 ms when measured; past this the CLI is wedged, so close it.
INTERRUPT_TIMEOUT = 1.0
# A run that ends unfinished leaves its CLI this long to close before SIGTERM, then this
# long again before SIGKILL: one that heeds the interrupt is gone in ~0.1 s, and the SDK
# alone would wait 5 s (and 5 more after SIGTERM) on a wedged one, holding the answer.
CLOSE_TIMEOUT = 1.0
KILL_TIMEOUT = 0.5


async def run(
    options: ClaudeAgentOptions,
    prompt: str | None,
    reader: Reader,
    gate: Gate,
    send: trio.MemorySendChannel[Event],
) -> None:
    """Run one CLI process to its end, or until cancelled; every event goes to ``send``.
    ``prompt`` None: the resumed transcript already ends with the question."""
    client = ClaudeSDKClient(options)
    closed = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_close_or_kill, client, closed)
        try:
            try:
                with map_errors():
                    await client.connect()
                    if prompt is not None:
                        await client.query(prompt)
                    await _relay(client, reader, gate, send)
            except errors.WrapperError as exc:
                failed = reader.ending = Failed(exc)
                with contextlib.suppress(trio.BrokenResourceError):
                    await send.send(failed)
        finally:
            # Finished: the CLI reported its result and winds down by itself.
            finished = isinstance(reader.ending, Finished)
            if not finished:
                nursery.cancel_scope.cancel()  # _close_or_kill's clock starts
            with trio.CancelScope(shield=True):
                if not finished:
                    with trio.move_on_after(INTERRUPT_TIMEOUT):
                        await _interrupt(client)
                await client.disconnect()
            closed.set()
            nursery.cancel_scope.cancel()


async def _relay(
    client: ClaudeSDKClient, reader: Reader, gate: Gate, send: trio.MemorySendChannel[Event]
) -> None:
    # Typed as AsyncIterator, but an async generator: close it when we stop early.
    receive = cast("AsyncGenerator[Message, None]", client.receive_messages())
    async with aclosing(receive) as messages:
        async for message in messages:
            events = reader.feed(message)
            gate.release(reader.take_whole())
            for event in events:
                await send.send(event)
            if reader.ended:
                return
    for event in reader.end():
        await send.send(event)


async def _close_or_kill(client: ClaudeSDKClient, closed: trio.Event) -> None:
    """Once cancelled (the run ended unfinished), give the CLI ``CLOSE_TIMEOUT`` to close,
    then SIGTERM, then SIGKILL: a wedged CLI never holds a request past its timeout by more
    than that. Its own task, since the SDK closes it shielded (in ``connect()`` too)."""
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await _stop_unless_closed(client, closed)


async def _stop_unless_closed(client: ClaudeSDKClient, closed: trio.Event) -> None:
    for seconds, signum in ((CLOSE_TIMEOUT, signal.SIGTERM), (KILL_TIMEOUT, signal.SIGKILL)):
        with trio.move_on_after(seconds):
            await closed.wait()
        # The SDK gives no handle on its process (the launcher, whose CLI goes with it).
        process = getattr(client._transport, "_process", None)
        if closed.is_set() or process is None or process.returncode is not None:
            return
        log.warning("Claude Code did not close within %g s: sending %s", seconds, signum.name)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


async def _interrupt(client: ClaudeSDKClient) -> None:
    try:
        await client.interrupt()
    except (ClaudeSDKError, OSError, trio.BrokenResourceError) as exc:
        log.debug("interrupt failed: %s", exc)


@contextmanager
def map_errors() -> Iterator[None]:
    """SDK and OS failures as our errors; their text (paths, addresses) goes to the log."""
    try:
        yield
    except CLINotFoundError as exc:
        log.error("Claude Code CLI not found: %s", exc)
        raise cli_not_found() from exc
    except CLIConnectionError as exc:
        log.error("could not talk to Claude Code: %s", exc)
        raise errors.UpstreamError("Could not talk to Claude Code.") from exc
    except ClaudeSDKError as exc:
        log.error("Claude Code failed: %s", exc)
        raise errors.UpstreamError(f"Claude Code failed: {upstream.scrub(str(exc))}") from exc
    except OSError as exc:
        log.error("could not start Claude Code: %s", exc)
        raise errors.UpstreamError(f"Could not start Claude Code: {exc.strerror}.") from exc


def cli_not_found() -> errors.UpstreamError:
    return errors.UpstreamError(
        "Claude Code CLI not found (see CLAUDE_CLI_PATH).", code="claude_cli_not_found"
    )
