"""Resumable points: where a conversation's Claude session can be taken up again, and the
journal that keeps them whole. The one store that sessions (wrapper.sessions) and
automatic continuation (wrapper.placement) share; neither reaches into the other.

A point is a Claude session id in a place that outlives its runs: a session's row (keyed
by tenant and id) or a continuation (keyed by the digest of a tenant's conversation). The
blocking SQLite code is wrapper.session_store; here it runs in worker threads, with its
failures as ``StoreUnavailable`` (the cause in the log).

Rules kept here:
- A run in a lasting place is journaled before it starts (``begin``: the place's
  transcripts as they were, ``snapshot``); a run that fails is undone from it (``undo``)
  and its entry ended; a crash leaves the entry, and ``recover`` undoes it at the next
  start, before any request. Recording a finished turn ends its entry in the same
  transaction (wrapper.session_store).
- Blocking work (sqlite, file copies) runs in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from wrapper import errors, places
from wrapper.places import Place
from wrapper.session_store import PendingTurn, SessionRow, Store, Totals, TurnRecord

log = logging.getLogger(__name__)

T = TypeVar("T")


class Points:
    """The store of resumable points and the journal of runs in lasting places."""

    def __init__(self, state_dir: Path) -> None:
        self.store = Store(state_dir)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except (sqlite3.Error, OSError) as exc:
            log.error("session store %s: %s", self.store.path, exc)
            raise errors.StoreUnavailable("The session store is unavailable.") from exc

    # --- sessions ---------------------------------------------------------------------

    async def session(self, tenant: str, session_id: str) -> SessionRow | None:
        return await self._call(self.store.get, tenant, session_id)

    async def page(
        self, tenant: str, limit: int, after: str | None
    ) -> tuple[list[SessionRow], bool] | None:
        return await self._call(self.store.page, tenant, limit, after)

    async def totals(self, tenant: str) -> Totals:
        return await self._call(self.store.totals, tenant)

    async def count(self, tenant: str | None = None) -> int:
        return await self._call(self.store.count, tenant)

    async def record_turn(self, tenant: str, session_id: str, cwd: str, record: TurnRecord) -> None:
        await self._call(self.store.record_turn, tenant, session_id, cwd, record, time.time())

    async def delete(self, tenant: str, session_id: str) -> None:
        await self._call(self.store.delete, tenant, session_id)

    async def expired(self, ttl: float) -> list[SessionRow]:
        return await self._call(self.store.expired, time.time() - ttl)

    # --- continuations ----------------------------------------------------------------

    async def continuation(self, key: str) -> tuple[str, str] | None:
        """The (Claude session id, place root) that answered the conversation ``key``."""
        return await self._call(self.store.continuation, key, time.time())

    async def record_continuation(self, key: str, claude_session_id: str, root: Path) -> None:
        await self._call(
            self.store.record_continuation, key, claude_session_id, str(root), time.time()
        )

    async def expire_chains(self, ttl: float) -> list[str]:
        return await self._call(self.store.expire_chains, time.time() - ttl)

    # --- the journal ------------------------------------------------------------------

    async def begin(self, pending: PendingTurn) -> None:
        """Journal a run about to start in a place that outlives it."""
        await self._call(self.store.begin_turn, pending)

    async def end(self, cwd: str) -> None:
        """Forget the journal entry of a run undone (or with nothing to undo)."""
        with contextlib.suppress(errors.StoreUnavailable):  # logged; undone at the next start
            await self._call(self.store.end_turn, cwd)

    async def rollback(self, pending: PendingTurn) -> None:
        """Undo the run ``pending`` and end its entry; shielded, it must not be cut."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(undo, pending)
            await self.end(pending.cwd)

    async def recover(self) -> int:
        """Undo the runs a crash cut: journaled, never ended. Before any request is taken."""
        pending = await self._call(self.store.pending_turns)
        undone = 0
        for turn in pending:
            try:
                await trio.to_thread.run_sync(undo, turn)
            except OSError as exc:  # kept in the journal: the next start tries again
                log.error("cannot roll back the turn cut in %s: %s", turn.cwd, exc)
                continue
            await self._call(self.store.end_turn, turn.cwd)
            undone += 1
        if pending:
            log.warning("rolled back %d of %d turn(s) cut by a crash", undone, len(pending))
        return undone


def snapshot(place: Place, workdir: Path) -> PendingTurn:
    """Make the place (blocking); what undoes the run about to start there. Raises
    ``SessionConflict`` when the transcript it resumes is gone."""
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
