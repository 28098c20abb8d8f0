"""Sessions: conversations the server keeps, so a client sends only the new turn.

A session is a row in the store (wrapper.session_store), a place of its own
(wrapper.places: ``<workdir>/sessions/<sha256 of tenant and id>``, never shared) and the
Claude Code transcript kept in that place, which each turn resumes (``resume=<claude
session id>``): Claude gets its earlier turns as real messages, with its own context
intact, even after a restart.

Rules kept here:
- A session belongs to its tenant (the API key that created it, see ``Request.tenant``):
  every method takes the tenant, and another tenant's session does not exist for it (404),
  whatever the id. The same id under two tenants is two sessions, two directories.
- Turns of one session are ordered: a per-session ``trio.Lock``; a second request waits
  for the first (within its own timeout), never interleaves with it. Delete and the
  reaper take the same lock, or skip a session that is in use.
- A turn takes its run slot (the ``slot`` it is handed, wrapper.limits.RunGate) last:
  after the session lock and after every refusal (function calling, the session caps, a
  vanished transcript), so a turn that waits or is refused never holds a slot.
- Caps: a new session is refused (403 ``session_limit_reached``) when the server holds
  ``max_sessions``, or its API key ``max_sessions_per_key`` (not applied to the one no-key
  tenant); existing sessions keep working. First turns still running are not counted
  yet, so a key can pass its cap by at most its runs in flight.
- Nothing lost: before a run the transcript is copied and the copy journaled, durably,
  in the store (``PendingTurn``); a run that fails in any way (upstream error, timeout,
  disconnect, shutdown) gets it back, and the row, written only after success, ends the
  journal entry in the same transaction. A first turn that fails leaves no session at
  all. A turn a crash cut (even ``kill -9``) is still journaled: at start-up, before the
  first request, ``recover`` undoes it the same way, so the transcript and the table
  agree again (a new chain of wrapper.continuation, journaled too, is removed).
- A paid answer is the client's: when the store cannot record the finished turn, the
  error is logged and the answer still goes out, and the session is rolled back to what
  its row says, as after a failure (a first turn then leaves no session).
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
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from wrapper import errors, places
from wrapper.claude import Backend, CallSink, Outcome, TextSink
from wrapper.config import Config
from wrapper.convert import Turn, usage_from
from wrapper.places import Place
from wrapper.session_store import (
    NO_KEY_TENANT,
    PendingTurn,
    SessionRow,
    Store,
    Totals,
    TurnRecord,
)

log = logging.getLogger(__name__)

# Client-chosen ids: short, printable, safe in headers, logs and URLs; not only dots,
# which URLs and proxies read as path steps (``/v1/sessions/..``).
SESSION_ID_RE = re.compile(r"(?!\.+\Z)[A-Za-z0-9._:-]{1,128}")
# The reaper looks at least once a minute, so a session outlives its TTL by at most that.
MAX_SWEEP_INTERVAL = 60.0

T = TypeVar("T")
# A run slot not yet taken: entered just before the run (wrapper.limits.RunGate.slot).
Slot = AbstractAsyncContextManager[None]


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
            "Invalid 'session_id': use 1 to 128 letters, digits and . _ : - (not only dots).",
            param="session_id",
            code="invalid_session_id",
        )
    return value


class Sessions:
    """The server's sessions: the store, the per-session locks, runs and the reaper."""

    def __init__(self, config: Config, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.store = Store(config.state_dir)
        self.count = 0  # for the wrapper_sessions gauge; refreshed as the table changes
        self._locks: dict[tuple[str, str], trio.Lock] = {}
        self._users: Counter[tuple[str, str]] = Counter()

    def directory(self, tenant: str, session_id: str) -> Path:
        # NUL is in neither a tenant nor an id: each (tenant, id) has a name of its own.
        digest = hashlib.sha256(f"{tenant}\0{session_id}".encode()).hexdigest()[:32]
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
    async def _locked(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, trio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def get(self, tenant: str, session_id: str) -> SessionRow:
        row = await self.stored(self.store.get, tenant, session_id)
        if row is None:
            raise errors.SessionNotFound(
                f"No session '{session_id}'.", param="session_id", code="session_not_found"
            )
        return row

    async def page(
        self, tenant: str, limit: int, after: str | None
    ) -> tuple[list[SessionRow], bool]:
        """The tenant's sessions, newest first, after the session ``after``; more to come?"""
        found = await self.stored(self.store.page, tenant, limit, after)
        if found is None:
            raise errors.InvalidRequest(
                f"Invalid 'after': no session '{after}' to list after.", param="after"
            )
        return found

    async def totals(self, tenant: str) -> Totals:
        return await self.stored(self.store.totals, tenant)

    async def _check_room(self, tenant: str) -> None:
        """Refuse a new session past the server's cap or its key's."""
        held = await self.stored(self.store.count)
        if held >= self.config.max_sessions:
            raise errors.SessionLimitReached(
                f"The server holds its maximum of {self.config.max_sessions} sessions;"
                " delete one (DELETE /v1/sessions/{id}) or wait until one expires."
            )
        if tenant == NO_KEY_TENANT:
            return
        mine = await self.stored(self.store.count, tenant)
        if mine >= self.config.max_sessions_per_key:
            raise errors.SessionLimitReached(
                f"This API key holds its maximum of {self.config.max_sessions_per_key}"
                " sessions; delete one (DELETE /v1/sessions/{id}) or wait until one expires."
            )

    async def run(
        self,
        tenant: str,
        session_id: str,
        turn: Turn,
        messages: int,
        on_text: TextSink | None,
        on_call: CallSink | None,
        slot: Slot,
    ) -> Outcome:
        """Answer ``turn`` in the tenant's session; ``messages``: how many the client sent.
        ``slot`` is entered only once the turn is about to run."""
        if turn.messages or turn.calling.functions:
            raise errors.InvalidRequest(
                "Function calling is not supported in a session yet; send the request"
                " without 'session_id', with the whole conversation.",
                param="tools" if turn.calling.functions else "messages",
                code="unsupported_in_session",
            )
        async with self._locked((tenant, session_id)):
            row = await self.stored(self.store.get, tenant, session_id)
            if row is None:
                await self._check_room(tenant)
            root = Path(row.cwd) if row else self.directory(tenant, session_id)
            place = Place(root, row.claude_session_id if row else None)
            try:
                pending = await trio.to_thread.run_sync(_snapshot, place, self.config.workdir)
            except (OSError, places.UnsafeDirectory) as exc:
                log.error("session %s: cannot prepare its place: %s", session_id, exc)
                raise errors.WorkdirUnavailable("Cannot prepare this session's directory.") from exc
            try:
                await self.begin_turn(pending)
                async with slot:
                    outcome = await self.backend.run(turn, on_text, on_call, place)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(undo, pending)
                    await self.end_turn(pending.cwd)
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
                await self._record(tenant, session_id, record, pending)
            return outcome

    async def begin_turn(self, pending: PendingTurn) -> None:
        """Journal a run about to start in a place that outlives it; a crash is undone at
        the next start (``recover``)."""
        await self.stored(self.store.begin_turn, pending)

    async def end_turn(self, cwd: str) -> None:
        """Forget the journal entry of a run undone (or with nothing to undo)."""
        with contextlib.suppress(errors.WrapperError):  # logged; undone again at the next start
            await self.stored(self.store.end_turn, cwd)

    async def recover(self) -> int:
        """Undo the runs a crash cut: journaled, never ended. Before any request is taken."""
        pending = await self.stored(self.store.pending_turns)
        undone = 0
        for turn in pending:
            try:
                await trio.to_thread.run_sync(undo, turn)
            except OSError as exc:  # kept in the journal: the next start tries again
                log.error("cannot roll back the turn cut in %s: %s", turn.cwd, exc)
                continue
            await self.stored(self.store.end_turn, turn.cwd)
            undone += 1
        if pending:
            log.warning("rolled back %d of %d turn(s) cut by a crash", undone, len(pending))
        return undone

    async def _record(
        self, tenant: str, session_id: str, record: TurnRecord, pending: PendingTurn
    ) -> None:
        try:
            await self.stored(
                self.store.record_turn, tenant, session_id, pending.cwd, record, time.time()
            )
        except errors.WrapperError:  # the store's error is logged by stored()
            log.error("session %s: turn answered but not recorded; the client gets it", session_id)
            await trio.to_thread.run_sync(undo, pending)  # back to what the table says
            await self.end_turn(pending.cwd)
            return
        self.count += pending.resumed is None  # a new session

    async def delete(self, tenant: str, session_id: str) -> None:
        async with self._locked((tenant, session_id)):
            row = await self.get(tenant, session_id)
            await self._remove(row)

    async def _remove(self, row: SessionRow) -> None:
        await self.stored(self.store.delete, row.tenant, row.id)
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
            # A turn is running or waiting: it renews the session.
            if (row.tenant, row.id) in self._locks:
                continue
            await self._remove(row)
            removed += 1
        if removed:
            log.info("removed %d expired session(s)", removed)
        return removed

    async def reaper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Undo what a crash cut (``recover``), then sweep every ``min(60, ttl / 2)``
        seconds, for as long as the server runs."""
        with contextlib.suppress(errors.WrapperError):  # logged; the next start tries again
            await self.recover()
        with contextlib.suppress(errors.WrapperError):  # logged; requests will report it
            self.count = await self.stored(self.store.count)
        task_status.started()
        interval = min(MAX_SWEEP_INTERVAL, self.config.session_ttl / 2)
        while True:
            await trio.sleep(interval)
            with contextlib.suppress(errors.WrapperError):  # logged; the next sweep retries
                await self.sweep()


def _snapshot(place: Place, workdir: Path) -> PendingTurn:
    """Make the session's place; what undoes the run about to start there."""
    places.make(place, workdir)
    saved = None
    if place.resume is not None:
        try:
            saved = place.transcript(place.resume).read_bytes()
        except FileNotFoundError:
            raise errors.SessionConflict(
                "This session's Claude Code transcript is gone, so its context is lost;"
                " delete the session (DELETE /v1/sessions/{id}) and start a new one.",
                param="session_id",
                code="session_transcript_missing",
            ) from None
    project = place.project
    before = sorted(p.name for p in project.glob("*.jsonl")) if project.is_dir() else []
    return PendingTurn(str(place.root), place.resume, saved, tuple(before))


def undo(pending: PendingTurn) -> None:
    """Put a place back as it was before the run ``pending`` (blocking): a new place is
    removed; else the transcripts the run added go and the resumed one is restored."""
    root = Path(pending.cwd)
    if pending.resumed is None:
        places.remove(root)
        return
    if not root.is_dir():  # removed meanwhile (the session was deleted): nothing to undo
        return
    place = Place(root, pending.resumed)
    for path in place.project.glob("*.jsonl"):
        if path.name not in pending.before:
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    if pending.saved is not None:
        place.transcript(pending.resumed).write_bytes(pending.saved)
