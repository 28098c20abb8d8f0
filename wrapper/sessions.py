"""Sessions: conversations the server keeps, so a client sends only the new turn.

A session is a row in the store (wrapper.session_store), a place of its own
(wrapper.places: ``<workdir>/sessions/<sha256 of the id>``, never shared) and the Claude
Code transcript kept in that place, which each turn resumes (``resume=<claude session
id>``): Claude gets its earlier turns as real messages, with its own context intact, even
after a restart.

Rules kept here:
- Turns of one session are ordered: a per-session ``trio.Lock``; a second request waits
  for the first (within its own timeout), never interleaves with it. Delete and the
  reaper take the same lock, or skip a session that is in use.
- Nothing lost: the transcript is copied before a run; a run that fails in any way
  (upstream error, timeout, disconnect, shutdown) gets it back, and the row is written
  only after success. A first turn that fails leaves no session at all.
- A session whose transcript vanished is refused with 409 ``session_transcript_missing``
  (delete it and start again), never silently continued without its context.
- Requests that carry client functions or their results are refused in a session (400):
  their calls and results are replayed as a written transcript, which a session's own
  transcript cannot take yet.
- Blocking work (sqlite, file copies) runs in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from wrapper import errors, places
from wrapper.claude import Backend, CallSink, Outcome, TextSink
from wrapper.config import Config
from wrapper.convert import Turn, usage_from
from wrapper.places import Place
from wrapper.session_store import SessionRow, Store, TurnRecord

log = logging.getLogger(__name__)

# Client-chosen ids: short, printable, safe in headers, logs and URLs.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The reaper looks at least once a minute, so a session outlives its TTL by at most that.
MAX_SWEEP_INTERVAL = 60.0

T = TypeVar("T")


def session_id_of(body: str | None, header: str | None) -> str | None:
    """The request's session id, from the body and/or ``X-Session-Id``; checked."""
    if body is not None and header is not None and body != header:
        raise errors.InvalidRequest(
            "The 'session_id' in the body and the X-Session-Id header differ.",
            param="session_id",
            code="session_id_mismatch",
        )
    value = body if body is not None else header
    if value is not None and not SESSION_ID_RE.fullmatch(value):
        raise errors.InvalidRequest(
            "Invalid 'session_id': use 1 to 128 letters, digits and . _ : -",
            param="session_id",
            code="invalid_session_id",
        )
    return value


@attrs.frozen
class _Snapshot:
    """A session's files before a run: what a failed run is rolled back to."""

    place: Place
    fresh: bool  # no turn stored yet: a failure removes everything
    before: frozenset[Path]
    saved: tuple[Path, bytes] | None


class Sessions:
    """The server's sessions: the store, the per-session locks, runs and the reaper."""

    def __init__(self, config: Config, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.store = Store(config.state_dir)
        self.count = 0  # for the wrapper_sessions gauge; refreshed as the table changes
        self._locks: dict[str, trio.Lock] = {}
        self._users: Counter[str] = Counter()

    def directory(self, session_id: str) -> Path:
        digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
        return self.config.workdir / "sessions" / digest

    async def stored(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except (sqlite3.Error, OSError) as exc:
            log.error("session store %s: %s", self.store.path, exc)
            raise errors.WrapperError(
                "The session store is unavailable.", code="session_store_unavailable"
            ) from exc

    @asynccontextmanager
    async def _locked(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_id, trio.Lock())
        self._users[session_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[session_id] -= 1
            if not self._users[session_id]:
                del self._users[session_id], self._locks[session_id]

    async def get(self, session_id: str) -> SessionRow:
        row = await self.stored(self.store.get, session_id)
        if row is None:
            raise errors.SessionNotFound(
                f"No session '{session_id}'.", param="session_id", code="session_not_found"
            )
        return row

    async def all(self) -> list[SessionRow]:
        return await self.stored(self.store.all)

    async def run(
        self,
        session_id: str,
        turn: Turn,
        messages: int,
        on_text: TextSink | None,
        on_call: CallSink | None,
    ) -> Outcome:
        """Answer ``turn`` in the session; ``messages``: how many the client sent."""
        if turn.messages or turn.calling.functions:
            raise errors.InvalidRequest(
                "Function calling is not supported in a session yet; send the request"
                " without 'session_id', with the whole conversation.",
                param="tools" if turn.calling.functions else "messages",
                code="unsupported_in_session",
            )
        async with self._locked(session_id):
            row = await self.stored(self.store.get, session_id)
            root = Path(row.cwd) if row else self.directory(session_id)
            place = Place(root, row.claude_session_id if row else None)
            snapshot = await trio.to_thread.run_sync(_snapshot, place, self.config.workdir)
            try:
                outcome = await self.backend.run(turn, on_text, on_call, place)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_restore, snapshot)
                raise
            usage = usage_from(outcome.usage)
            record = TurnRecord(
                claude_session_id=outcome.session_id,
                model=turn.model,
                messages=messages + 1,  # and the answer
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=outcome.cost_usd or 0.0,
            )
            with trio.CancelScope(shield=True):  # the answer exists: keep it
                await self.stored(
                    self.store.record_turn, session_id, str(root), record, time.time()
                )
            self.count += row is None
            return outcome

    async def delete(self, session_id: str) -> None:
        async with self._locked(session_id):
            row = await self.get(session_id)
            await self._remove(row)

    async def _remove(self, row: SessionRow) -> None:
        await self.stored(self.store.delete, row.id)
        await trio.to_thread.run_sync(places.remove, Path(row.cwd))
        self.count = max(0, self.count - 1)

    async def sweep(self) -> int:
        """Remove sessions idle for longer than the TTL; skip those in use."""
        expired = await self.stored(self.store.expired, time.time() - self.config.session_ttl)
        chains = await self.stored(self.store.expire_chains, time.time() - self.config.session_ttl)
        for chain in chains:  # automatic continuation's places (wrapper.continuation)
            await trio.to_thread.run_sync(places.remove, Path(chain))
        removed = 0
        for row in expired:
            if row.id in self._locks:  # a turn is running or waiting: it renews the session
                continue
            await self._remove(row)
            removed += 1
        if removed:
            log.info("removed %d expired session(s)", removed)
        return removed

    async def reaper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sweep every ``min(60, ttl / 2)`` seconds, for as long as the server runs."""
        with contextlib.suppress(errors.WrapperError):  # logged; requests will report it
            self.count = await self.stored(self.store.count)
        task_status.started()
        interval = min(MAX_SWEEP_INTERVAL, self.config.session_ttl / 2)
        while True:
            await trio.sleep(interval)
            with contextlib.suppress(errors.WrapperError):  # logged; the next sweep retries
                await self.sweep()


def _snapshot(place: Place, workdir: Path) -> _Snapshot:
    places.make(place, workdir)
    saved = None
    if place.resume is not None:
        path = place.transcript(place.resume)
        try:
            saved = (path, path.read_bytes())
        except FileNotFoundError:
            raise errors.SessionConflict(
                "This session's Claude Code transcript is gone, so its context is lost;"
                " delete the session (DELETE /v1/sessions/{id}) and start a new one.",
                param="session_id",
                code="session_transcript_missing",
            ) from None
    project = place.project
    before = frozenset(project.glob("*.jsonl")) if project.is_dir() else frozenset()
    return _Snapshot(place, place.resume is None, before, saved)


def _restore(snapshot: _Snapshot) -> None:
    if snapshot.fresh:
        places.remove(snapshot.place.root)
        return
    for path in snapshot.place.project.glob("*.jsonl"):
        if path not in snapshot.before:
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    if snapshot.saved is not None:
        path, data = snapshot.saved
        path.write_bytes(data)
