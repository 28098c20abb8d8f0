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
- A turn (wrapper.placement) takes its run slot last: after the session lock and after
  every refusal (the plan's, the session caps, a vanished transcript), so a turn that
  waits or is refused never holds a slot.
- Caps: a new session is refused (403 ``session_limit_reached``) when the server holds
  ``max_sessions``, or its API key ``max_sessions_per_key`` (not applied to the one no-key
  tenant); existing sessions keep working. First turns still running are not counted
  yet, so a key can pass its cap by at most its runs in flight.
- Nothing lost (wrapper.points, wrapper.placement): a turn is journaled before it runs
  and undone when it fails in any way, or at the next start after a crash; a first turn
  that fails leaves no session at all. A paid answer is the client's: when the store
  cannot record the finished turn, the answer still goes out and the session is rolled
  back to what its row says.
- A session whose transcript vanished is refused with 409 ``session_transcript_missing``
  (delete it and start again), never silently continued without its context.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from wrapper import errors, places
from wrapper.config import Config
from wrapper.points import Points
from wrapper.session_store import NO_KEY_TENANT, SessionRow, Totals

log = logging.getLogger(__name__)

# The reaper looks at least once a minute, so a session outlives its TTL by at most that.
MAX_SWEEP_INTERVAL = 60.0


class Sessions:
    """The server's sessions: the store, the per-session locks, runs and the reaper."""

    def __init__(self, config: Config, points: Points) -> None:
        self.config = config
        self.points = points
        self.count = 0  # for the wrapper_sessions gauge; refreshed as the table changes
        self._locks: dict[tuple[str, str], trio.Lock] = {}
        self._users: Counter[tuple[str, str]] = Counter()

    def directory(self, tenant: str, session_id: str) -> Path:
        # NUL is in neither a tenant nor an id: each (tenant, id) has a name of its own.
        digest = hashlib.sha256(f"{tenant}\0{session_id}".encode()).hexdigest()[:32]
        return self.config.workdir / "sessions" / digest

    @asynccontextmanager
    async def locked(self, tenant: str, session_id: str) -> AsyncIterator[None]:
        """The session's turn lock: turns, deletes and the reaper take it one at a time."""
        key = (tenant, session_id)
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
        row = await self.points.session(tenant, session_id)
        if row is None:
            raise errors.SessionNotFound(
                f"No session '{session_id}'.", param="session_id", code="session_not_found"
            )
        return row

    async def page(
        self, tenant: str, limit: int, after: str | None
    ) -> tuple[list[SessionRow], bool]:
        """The tenant's sessions, newest first, after the session ``after``; more to come?"""
        found = await self.points.page(tenant, limit, after)
        if found is None:
            raise errors.InvalidRequest(
                f"Invalid 'after': no session '{after}' to list after.", param="after"
            )
        return found

    async def totals(self, tenant: str) -> Totals:
        return await self.points.totals(tenant)

    async def check_room(self, tenant: str) -> None:
        """Refuse a new session past the server's cap or its key's."""
        held = await self.points.count()
        if held >= self.config.max_sessions:
            raise errors.SessionLimitReached(
                f"The server holds its maximum of {self.config.max_sessions} sessions;"
                " delete one (DELETE /v1/sessions/{id}) or wait until one expires."
            )
        if tenant == NO_KEY_TENANT:
            return
        mine = await self.points.count(tenant)
        if mine >= self.config.max_sessions_per_key:
            raise errors.SessionLimitReached(
                f"This API key holds its maximum of {self.config.max_sessions_per_key}"
                " sessions; delete one (DELETE /v1/sessions/{id}) or wait until one expires."
            )

    async def delete(self, tenant: str, session_id: str) -> None:
        async with self.locked(tenant, session_id):
            row = await self.get(tenant, session_id)
            await self._remove(row)

    async def _remove(self, row: SessionRow) -> None:
        await self.points.delete(row.tenant, row.id)
        await trio.to_thread.run_sync(places.remove, Path(row.cwd))
        self.count = max(0, self.count - 1)

    async def sweep(self) -> int:
        """Remove sessions idle for longer than the TTL; skip those in use."""
        expired = await self.points.expired(self.config.session_ttl)
        chains = await self.points.expire_chains(self.config.session_ttl)
        for chain in chains:  # automatic continuation's places (wrapper.placement)
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
        with contextlib.suppress(errors.StoreUnavailable):  # logged; the next start retries
            await self.points.recover()
        with contextlib.suppress(errors.StoreUnavailable):  # logged; requests will report it
            self.count = await self.points.count()
        task_status.started()
        interval = min(MAX_SWEEP_INTERVAL, self.config.session_ttl / 2)
        while True:
            await trio.sleep(interval)
            with contextlib.suppress(errors.StoreUnavailable):  # logged; the next sweep retries
                await self.sweep()
