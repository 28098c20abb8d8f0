"""Where a run works: one async context manager per kind of place, each owning its
creation, snapshot, commit or rollback, and cleanup.

    async with placement.open(plan, tenant) as site:   # place made, session locked
        async with slot:                               # then the run slot
            async with backend.run(site.turn, site.place) as events:
                ...                                    # the run
        site.keep(answer, finished)                    # the answer is the client's
    # recorded (or rolled back), the place kept (or removed)

A site that is not kept (the run failed, the client left, the server stops) is rolled
back. The kinds (wrapper.plan):
- ``Scratch``: a fresh place, removed when the run is over.
- ``InSession``: the tenant's session (wrapper.sessions), under its lock for the whole
  turn; journaled before the run (wrapper.points), recorded after it.
- ``Continued`` (automatic continuation): a stateless client resends its whole history
  each time. When the messages before the last one are exactly a conversation this
  server answered (the same messages, ending with the same answer it gave), the run
  resumes that Claude Code session and sends only the last user message: the same
  context (Claude's own), far fewer tokens re-sent. Otherwise a fresh chain starts.

Rules kept here (continuation):
- The key is the SHA-256 of the tenant (see ``Request.tenant``) and the (role, text) list,
  system/developer messages aside (they are each run's system prompt, not part of
  Claude's transcript), whitespace-trimmed. So one API key's conversation is never
  continued for another, even when the other sends the very same messages.
- A continuation always forks (``fork_session``): the answered session stays as it was, so
  a regenerate or an edited branch from the same point is never a wrong continuation.
- The runs of one conversation share a place (``<workdir>/chains/<random>``); its
  transcripts stay until no conversation of the chain was used for ``SESSION_TTL``,
  then the reaper (wrapper.sessions) removes them. A vanished transcript means a fresh run.
- A crash leaves nothing that is ever continued wrongly. A new chain's place is journaled
  until its first answer is recorded, so one a crash cut is removed at the next start. A
  continued run cut by a crash leaves its fork's transcript, which nothing names (a
  conversation is recorded only once answered), beside an untouched parent; it goes when
  its chain expires.
- The store is an optimisation here: when it fails, the lookup finds nothing and the
  answer is still sent (the error is logged); the conversation is just not continuable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from wrapper import errors, places
from wrapper.config import Config
from wrapper.events import Answer, Finished, Usage
from wrapper.places import Place
from wrapper.plan import Continued, InSession, Plan, Scratch, Turn
from wrapper.points import Points, snapshot
from wrapper.session_store import PendingTurn, TurnRecord
from wrapper.sessions import Sessions

log = logging.getLogger(__name__)

T = TypeVar("T")


def history_key(tenant: str, conversation: Sequence[tuple[str, str]]) -> str:
    """The key of a tenant's conversation: a digest of the tenant and its (role, text)
    pairs."""
    normalized = [[role, text.strip()] for role, text in conversation]
    return hashlib.sha256(json.dumps([tenant, normalized]).encode()).hexdigest()


@attrs.define
class Site:
    """Where one run works (``place``) and the turn it runs there."""

    place: Place
    turn: Turn
    answer: Answer | None = None
    finished: Finished | None = None

    def keep(self, answer: Answer, finished: Finished) -> None:
        """The run answered: record it when the site closes. An answer with no Claude
        session (a run cut short by the server) cannot be resumed, so it is not kept."""
        if finished.session_id is not None:
            self.answer, self.finished = answer, finished


class Placement:
    """Makes the place of each planned run, and keeps or undoes what the run left."""

    def __init__(self, config: Config, points: Points, sessions: Sessions) -> None:
        self.workdir = config.workdir
        self.points = points
        self.sessions = sessions

    def open(self, plan: Plan, tenant: str) -> AbstractAsyncContextManager[Site]:
        match plan.where:
            case InSession() as where:
                return self.session(tenant, where, plan.turn)
            case Continued() as where:
                return self.continued(tenant, where, plan.turn)
            case Scratch():
                return self.scratch(plan.turn)

    async def _in_workdir(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` (blocking file work below the workdir) in a thread; its failure as ours."""
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except (OSError, places.UnsafeDirectory) as exc:
            log.error("cannot prepare a place in %s: %s", self.workdir, exc)
            raise errors.WorkdirUnavailable(
                "Cannot create a working directory for Claude Code."
            ) from exc

    @asynccontextmanager
    async def scratch(self, turn: Turn) -> AsyncIterator[Site]:
        place = await self._in_workdir(places.temporary, self.workdir)
        try:
            await self._in_workdir(places.make, place, self.workdir)
            yield Site(place, turn)
        finally:  # the CLI's transcript of the run holds the whole conversation
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(places.remove, place.root)

    @asynccontextmanager
    async def session(self, tenant: str, where: InSession, turn: Turn) -> AsyncIterator[Site]:
        session_id = where.session_id
        async with self.sessions.locked(tenant, session_id):
            row = await self.points.session(tenant, session_id)
            if row is None:
                await self.sessions.check_room(tenant)
            root = Path(row.cwd) if row else self.sessions.directory(tenant, session_id)
            place = Place(root, row.claude_session_id if row else None)
            try:
                pending = await trio.to_thread.run_sync(snapshot, place, self.workdir)
            except (OSError, places.UnsafeDirectory) as exc:
                log.error("session %s: cannot prepare its place: %s", session_id, exc)
                raise errors.WorkdirUnavailable("Cannot prepare this session's directory.") from exc
            site = Site(place, turn)
            try:
                await self.points.begin(pending)
                yield site
            except BaseException:
                await self.points.rollback(pending)
                raise
            if site.finished is None or site.finished.session_id is None:
                await self.points.rollback(pending)
                return
            usage = site.finished.usage or Usage()
            record = TurnRecord(
                claude_session_id=site.finished.session_id,
                model=turn.model,
                messages=where.messages + 1,  # and the answer
                prompt_tokens=usage.all_input,
                completion_tokens=usage.output_tokens,
                cost_usd=site.finished.cost_usd or 0.0,
            )
            with trio.CancelScope(shield=True):  # the answer exists: keep it
                try:
                    await self.points.record_turn(tenant, session_id, pending.cwd, record)
                except errors.StoreUnavailable:  # logged by the store
                    log.error("session %s: turn answered but not recorded", session_id)
                    await self.points.rollback(pending)  # back to what the table says
                    return
            self.sessions.count += pending.resumed is None  # a new session

    @asynccontextmanager
    async def continued(self, tenant: str, where: Continued, turn: Turn) -> AsyncIterator[Site]:
        *earlier, (_, current) = where.conversation
        place = await self._resumable(tenant, earlier)
        fresh = place is None
        if place is None:
            place = Place(self.workdir / "chains" / uuid.uuid4().hex, None)
        else:
            turn = attrs.evolve(turn, prompt=current)
        site = Site(place, turn)
        kept = False
        try:
            if fresh:
                with contextlib.suppress(errors.StoreUnavailable):  # only a crash needs it
                    await self.points.begin(PendingTurn(str(place.root), None))
            await self._in_workdir(places.make, place, self.workdir)
            yield site
            answer, finished = site.answer, site.finished
            session = finished.session_id if finished is not None else None
            if answer is not None and session is not None and answer.text and not answer.calls:
                key = history_key(tenant, [*where.conversation, ("assistant", answer.text)])
                with trio.CancelScope(shield=True):
                    kept = await self._record(key, session, place.root)
        finally:
            if fresh and not kept:  # nothing can continue it: leave nothing behind
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(places.remove, place.root)
                    await self.points.end(str(place.root))

    async def _resumable(self, tenant: str, earlier: list[tuple[str, str]]) -> Place | None:
        if not earlier or earlier[-1][0] != "assistant":
            return None
        try:
            found = await self.points.continuation(history_key(tenant, earlier))
        except errors.StoreUnavailable:  # logged by the store
            return None
        if found is None:
            return None
        claude_session_id, root = found
        place = Place(Path(root), claude_session_id, fork=True)
        if not await trio.to_thread.run_sync(place.transcript(claude_session_id).is_file):
            log.info("continuation transcript gone; answering with the whole history")
            return None
        return place

    async def _record(self, key: str, claude_session_id: str, root: Path) -> bool:
        """Remember the answered conversation; False when the store failed (logged)."""
        try:
            await self.points.record_continuation(key, claude_session_id, root)
        except errors.StoreUnavailable:
            log.error("continuation not recorded; the answer is sent all the same")
            return False
        return True
