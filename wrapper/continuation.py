"""Automatic continuation: a stateless client's conversation resumes the Claude session
that answered it, so only the new turn goes upstream.

An ordinary OpenAI client resends its whole history each time. When the messages before
the last one are exactly a conversation this server answered (the same messages, ending
with the same answer it gave), the run resumes that Claude Code session and sends only
the last user message: same context (Claude's own, tool results included), far fewer
tokens re-sent and no re-rendered ``<conversation_history>`` prompt.

Rules kept here:
- The key is the SHA-256 of the tenant (see ``Request.tenant``) and the (role, text) list,
  system/developer messages aside (they are each run's system prompt, not part of
  Claude's transcript), whitespace-trimmed. So one API key's conversation is never
  continued for another, even when the other sends the very same messages.
- A continuation always forks (``fork_session``): the answered session stays as it was, so
  a regenerate or an edited branch from the same point is never a wrong continuation.
  History that matches nothing starts a fresh run with the whole history, as before.
- The runs of one conversation share a place (``<workdir>/chains/<random>``); its
  transcripts stay until no conversation of the chain was used for ``SESSION_TTL``,
  then the reaper (wrapper.sessions) removes them. A vanished transcript means a fresh run.
- A crash leaves nothing that is ever continued wrongly. A new chain's place is journaled
  (wrapper.sessions ``begin_turn``) until its first answer is recorded, so one a crash cut
  is removed at the next start, not left with no row to expire it. A continued run cut by
  a crash leaves its fork's transcript, which nothing names (a conversation is recorded
  only once answered), beside an untouched parent; it goes when its chain expires.
- Only plain conversations: function calling and Claude Code's tools run as before.
- The run slot (``slot``) is taken after the lookup, just around the run.
- The store is an optimisation here: when it fails, the lookup finds nothing and the
  answer is still sent (the error is logged); the conversation is just not continuable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from wrapper import errors, places
from wrapper.claude import Backend, CallSink, Outcome, TextSink
from wrapper.config import Config
from wrapper.convert import Turn
from wrapper.places import Place
from wrapper.session_store import PendingTurn
from wrapper.sessions import Sessions, Slot

log = logging.getLogger(__name__)


def history_key(tenant: str, conversation: Sequence[tuple[str, str]]) -> str:
    """The key of a tenant's conversation: a digest of the tenant and its (role, text)
    pairs."""
    normalized = [[role, text.strip()] for role, text in conversation]
    return hashlib.sha256(json.dumps([tenant, normalized]).encode()).hexdigest()


def continuable(turn: Turn) -> bool:
    """Plain conversations only: calls and built-in tools keep their own paths."""
    return not (turn.messages or turn.calling.functions or turn.calling.builtin.enabled)


class Continuations:
    """Runs stateless turns so that the next turn of the same conversation can resume."""

    def __init__(self, config: Config, backend: Backend, sessions: Sessions) -> None:
        self.config = config
        self.backend = backend
        self.sessions = sessions

    async def _resumable(self, tenant: str, earlier: list[tuple[str, str]]) -> Place | None:
        if not earlier or earlier[-1][0] != "assistant":
            return None
        store = self.sessions.store
        key = history_key(tenant, earlier)
        try:
            found = await self.sessions.stored(store.continuation, key, time.time())
        except errors.WrapperError:  # logged by stored()
            return None
        if found is None:
            return None
        claude_session_id, root = found
        place = Place(Path(root), claude_session_id, fork=True)
        if not await trio.to_thread.run_sync(place.transcript(claude_session_id).is_file):
            log.info("continuation transcript gone; answering with the whole history")
            return None
        return place

    async def run(
        self,
        tenant: str,
        conversation: list[tuple[str, str]],
        turn: Turn,
        on_text: TextSink | None,
        on_call: CallSink | None,
        slot: Slot,
    ) -> Outcome:
        """Answer the tenant's ``turn`` (whose request's messages are ``conversation``);
        ``slot`` is entered just around the run."""
        *earlier, (_, current) = conversation
        place = await self._resumable(tenant, earlier)
        fresh = place is None
        if place is None:
            place = Place(self.config.workdir / "chains" / uuid.uuid4().hex, None)
        else:
            turn = attrs.evolve(turn, prompt=current)
        kept = False
        try:
            if fresh:
                with contextlib.suppress(errors.WrapperError):  # logged; only a crash needs it
                    await self.sessions.begin_turn(PendingTurn(str(place.root), None))
            async with slot:
                outcome = await self.backend.run(turn, on_text, on_call, place)
            if outcome.text and not outcome.calls:
                key = history_key(tenant, [*conversation, ("assistant", outcome.text)])
                with trio.CancelScope(shield=True):
                    kept = await self._record(key, outcome.session_id, place.root)
            return outcome
        finally:
            if fresh and not kept:  # nothing can continue it: leave nothing behind
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(places.remove, place.root)
                    await self.sessions.end_turn(str(place.root))

    async def _record(self, key: str, claude_session_id: str, root: Path) -> bool:
        """Remember the answered conversation; False when the store failed (logged)."""
        store = self.sessions.store
        try:
            await self.sessions.stored(
                store.record_continuation, key, claude_session_id, str(root), time.time()
            )
        except errors.WrapperError:
            log.error("continuation not recorded; the answer is sent all the same")
            return False
        return True
