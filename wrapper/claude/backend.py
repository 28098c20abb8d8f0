"""``Backend``: one planned turn in its place -> the events of its run (see the package's
docstring for the contract)."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import attrs
import trio

from wrapper import auth, errors, transcript
from wrapper.claude import BUNDLED_CLI, options, process
from wrapper.claude.gate import Gate
from wrapper.claude.reader import Reader
from wrapper.config import Config
from wrapper.events import Event, Failed
from wrapper.places import Place
from wrapper.plan import Turn

log = logging.getLogger(__name__)


class Backend:
    """Runs Claude Code turns under the server's configuration, each in the place it is
    given, through the launcher (wrapper.sandbox) when one is installed."""

    def __init__(
        self, config: Config, launcher: Path | None = None, sandboxed: bool = False
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.sandboxed = sandboxed
        self.cli = Path(config.cli_path) if config.cli_path else BUNDLED_CLI
        self.live_processes = 0

    @asynccontextmanager
    async def run(
        self, turn: Turn, place: Place
    ) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """The events of one run of ``turn`` in ``place`` (made already); the run is over,
        its process closed, when the context exits."""
        send, receive = trio.open_memory_channel[Event](0)
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._produce, turn, place, send)
            try:
                async with receive:
                    yield receive
            except Exception as exc:  # raised outside the nursery: not an exception group
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _produce(self, turn: Turn, place: Place, send: trio.MemorySendChannel[Event]) -> None:
        async with send:
            try:
                place, env = await self._prepare(turn, place)
            except errors.WrapperError as exc:
                with contextlib.suppress(trio.BrokenResourceError):
                    await send.send(Failed(exc))
                return
            gate = Gate(place.cwd, place.root, frozenset(turn.tools))
            sdk_options = options.options(turn, place, gate, env, self.config, self.launcher)
            prompt = None if turn.messages else turn.prompt
            self.live_processes += 1
            try:
                await process.run(sdk_options, prompt, Reader(turn.names, turn.single), gate, send)
            finally:
                self.live_processes -= 1

    async def _prepare(self, turn: Turn, place: Place) -> tuple[Place, dict[str, str]]:
        """The files of the run in its place, and the CLI's environment."""
        if not await trio.to_thread.run_sync(os.access, self.cli, os.X_OK):
            raise process.cli_not_found()
        try:
            if turn.messages:
                place = attrs.evolve(place, resume=str(uuid.uuid4()))
                await trio.to_thread.run_sync(_write_transcript, turn, place)
            if turn.system_prompt is not None:
                await trio.to_thread.run_sync(place.system_prompt.write_text, turn.system_prompt)
        except OSError as exc:
            log.error("cannot write the run's files in %s: %s", place.root, exc)
            raise errors.TranscriptUnavailable(
                f"Cannot write the conversation for Claude Code: {exc.strerror}."
            ) from exc
        base = self.config.claude_environment()
        credentials = await trio.to_thread.run_sync(
            auth.cli_credentials, base, self.config.claude_config_dir()
        )
        return place, options.environment(turn, place, base, credentials)


def _write_transcript(turn: Turn, place: Place) -> None:
    assert place.resume is not None
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = transcript.lines(
        turn.messages, session_id=place.resume, cwd=str(place.cwd), model=turn.model, timestamp=now
    )
    transcript.write(place.transcript(place.resume), text)
