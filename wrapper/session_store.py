"""The session table: SQLite in the state directory, plain blocking code (no Trio).

wrapper.sessions calls every function here through ``trio.to_thread.run_sync``. Each call
opens its own connection and closes it: sqlite3 connections must not cross threads, and
one connect costs ~0.1 ms, nothing next to a Claude Code run (hundreds of ms).

Rules kept here:
- WAL journal: readers (the listing endpoints) never block the writer that records a turn.
  Transactions that write begin IMMEDIATE, so two writers queue (``BUSY_TIMEOUT``) rather
  than one failing: every run in a lasting place writes its journal entry beside them.
- A row is written only after a run succeeded (``record_turn``), so a failed run never
  changes what the table says about a session.
- A run in a place that outlives it is journaled before it starts (``begin_turn``: the
  ``turns`` table, committed, so durable): what undoes it if it never completes, a
  ``kill -9`` included. The row that records the finished turn (``record_turn``,
  ``record_continuation``) ends its journal entry in the same transaction, so a turn is
  either recorded or still journaled, never both, never neither.
- Every session belongs to a tenant (the API key's digest; ``NO_KEY_TENANT`` without
  keys) and is keyed by (tenant, id): every query names the tenant, so one key's
  sessions are invisible to another, and the same id under two keys is two sessions.
- The schema is versioned (``PRAGMA user_version``) and upgraded in place, in one
  transaction, on first use. A database of the first release (version 0, no tenant column)
  has its sessions moved to ``NO_KEY_TENANT``; version 1 gains the ``turns`` journal.
- Listings page by (created, id), newest first: both never change, so a cursor stays
  valid while other sessions are used.
- Times are Unix seconds (``time.time()``): they must survive a restart of the server.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import attrs

DB_NAME = "sessions.sqlite3"
# A writer waits this long for another connection's lock before giving up (seconds).
BUSY_TIMEOUT = 10.0
# The one tenant when no API keys are configured: every client shares its sessions.
NO_KEY_TENANT = ""
# 2: with the journal of runs in flight. 1: sessions keyed by (tenant, id). 0: the first
# release's table, keyed by id alone.
SCHEMA_VERSION = 2

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS sessions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    claude_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    message_count INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (tenant, id)
)
""",
    # Listing pages walk this index: a page costs its length, not the tenant's sessions.
    "CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (tenant, created, id)",
    # Automatic continuation: the hash of a conversation this server answered (up to and
    # including its answer, and its tenant) -> the Claude session holding it, in its
    # chain's directory.
    """
CREATE TABLE IF NOT EXISTS continuations (
    key TEXT PRIMARY KEY,
    claude_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    last_used REAL NOT NULL
)
""",
    # Runs in flight in a place that outlives them (a session's, a new chain's): one at a
    # time per place. ``resumed``: the Claude session the run resumes, NULL for a new
    # place; ``saved``: that transcript's bytes before the run; ``before``: a JSON list of
    # the names of the place's transcripts before the run.
    """
CREATE TABLE IF NOT EXISTS turns (
    cwd TEXT PRIMARY KEY,
    resumed TEXT,
    saved BLOB,
    before TEXT NOT NULL
)
""",
)
COLUMNS = (
    "tenant, id, claude_session_id, cwd, model, created, last_used, message_count,"
    " prompt_tokens, completion_tokens, cost_usd"
)
# The first release's columns: the same, without the tenant.
V0_COLUMNS = COLUMNS.removeprefix("tenant, ")


@attrs.frozen
class SessionRow:
    """One session as stored."""

    tenant: str
    id: str
    claude_session_id: str
    cwd: str
    model: str
    created: float
    last_used: float
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    def to_json(self, ttl: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "session",
            "created": int(self.created),
            "last_used": int(self.last_used),
            "expires_at": int(self.last_used + ttl),
            "model": self.model,
            "message_count": self.message_count,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "cost_usd": round(self.cost_usd, 6),
        }


@attrs.frozen
class TurnRecord:
    """What one successful turn adds to its session."""

    claude_session_id: str
    model: str
    messages: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@attrs.frozen
class PendingTurn:
    """A run in flight in the place ``cwd``, as journaled before it started: what undoes it."""

    cwd: str
    resumed: str | None  # the Claude session it resumes; None: a new place, undone by removal
    saved: bytes | None = None  # that transcript before the run (None: it is left alone)
    before: tuple[str, ...] = ()  # the names of the place's transcripts before the run


@attrs.frozen
class Totals:
    """What one tenant's sessions add up to."""

    sessions: int
    messages: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Store:
    """The session table in ``state_dir``; every method blocks (call it from a thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / DB_NAME

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; ``write``: it takes the write lock at once (waiting up to
        ``BUSY_TIMEOUT`` for it): a read that then writes would fail, not wait, when
        another connection wrote meanwhile (SQLITE_BUSY_SNAPSHOT)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # private whatever the umask; SQLite's -wal and -shm
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        # Autocommit mode: transactions are begun here, explicitly (DDL included).
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)) as db:
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                _upgrade(db)
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            with db:  # one transaction, committed on success
                yield db

    def get(self, tenant: str, session_id: str) -> SessionRow | None:
        with self._db() as db:
            found = db.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE tenant = ? AND id = ?", (tenant, session_id)
            ).fetchone()
        return SessionRow(*found) if found else None

    def page(
        self, tenant: str, limit: int, after: str | None
    ) -> tuple[list[SessionRow], bool] | None:
        """Up to ``limit`` of the tenant's sessions, newest first, after the session
        ``after``; and whether more follow. None: ``after`` names no session."""
        with self._db() as db:
            cursor: tuple[float, str] = (float("inf"), "")
            if after is not None:
                found = db.execute(
                    "SELECT created, id FROM sessions WHERE tenant = ? AND id = ?", (tenant, after)
                ).fetchone()
                if found is None:
                    return None
                cursor = (float(found[0]), str(found[1]))
            rows = db.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE tenant = ? AND (created, id) < (?, ?)"
                " ORDER BY created DESC, id DESC LIMIT ?",
                (tenant, *cursor, limit + 1),
            ).fetchall()
        return [SessionRow(*r) for r in rows[:limit]], len(rows) > limit

    def totals(self, tenant: str) -> Totals:
        with self._db() as db:
            found = db.execute(
                "SELECT COUNT(*), TOTAL(message_count), TOTAL(prompt_tokens),"
                " TOTAL(completion_tokens), TOTAL(cost_usd) FROM sessions WHERE tenant = ?",
                (tenant,),
            ).fetchone()
        sessions, messages, prompt, completion, cost = found
        return Totals(int(sessions), int(messages), int(prompt), int(completion), float(cost))

    def count(self, tenant: str | None = None) -> int:
        """The tenant's sessions; with no tenant, everyone's."""
        if not self.path.exists():  # nothing stored yet: do not create a database to say so
            return 0
        with self._db() as db:
            if tenant is None:
                return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
            query = "SELECT COUNT(*) FROM sessions WHERE tenant = ?"
            return int(db.execute(query, (tenant,)).fetchone()[0])

    def record_turn(
        self, tenant: str, session_id: str, cwd: str, turn: TurnRecord, now: float
    ) -> None:
        """Add a turn to the session, creating its row on its first turn; end its journal
        entry."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM turns WHERE cwd = ?", (cwd,))
            db.execute(
                f"INSERT INTO sessions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(tenant, id) DO UPDATE SET"
                " claude_session_id = excluded.claude_session_id,"
                " model = excluded.model, last_used = excluded.last_used,"
                " message_count = message_count + excluded.message_count,"
                " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens = completion_tokens + excluded.completion_tokens,"
                " cost_usd = cost_usd + excluded.cost_usd",
                (
                    tenant,
                    session_id,
                    turn.claude_session_id,
                    cwd,
                    turn.model,
                    now,
                    now,
                    turn.messages,
                    turn.prompt_tokens,
                    turn.completion_tokens,
                    turn.cost_usd,
                ),
            )

    def delete(self, tenant: str, session_id: str) -> bool:
        with self._db(write=True) as db:
            key = (tenant, session_id)
            where = "WHERE tenant = ? AND id = ?"
            db.execute(f"DELETE FROM turns WHERE cwd IN (SELECT cwd FROM sessions {where})", key)
            query = f"DELETE FROM sessions {where}"
            return db.execute(query, key).rowcount > 0

    def expired(self, before: float) -> list[SessionRow]:
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM sessions WHERE last_used < ?", (before,))
            return [SessionRow(*r) for r in rows.fetchall()]

    def continuation(self, key: str, now: float) -> tuple[str, str] | None:
        """(claude session id, cwd) of the conversation hashed as ``key``; renews it."""
        with self._db(write=True) as db:
            found = db.execute(
                "SELECT claude_session_id, cwd FROM continuations WHERE key = ?", (key,)
            ).fetchone()
            if found:
                db.execute("UPDATE continuations SET last_used = ? WHERE key = ?", (now, key))
        return (str(found[0]), str(found[1])) if found else None

    def record_continuation(self, key: str, claude_session_id: str, cwd: str, now: float) -> None:
        """Remember an answered conversation of the chain in ``cwd``; end its journal entry."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM turns WHERE cwd = ?", (cwd,))
            db.execute(
                "INSERT OR REPLACE INTO continuations VALUES (?, ?, ?, ?)",
                (key, claude_session_id, cwd, now),
            )

    def expire_chains(self, before: float) -> list[str]:
        """Forget the chains (directories) none of whose conversations was used since
        ``before``; return their directories, for the caller to remove."""
        if not self.path.exists():
            return []
        with self._db(write=True) as db:
            rows = db.execute(
                "SELECT cwd FROM continuations GROUP BY cwd HAVING MAX(last_used) < ?", (before,)
            ).fetchall()
            cwds = [str(r[0]) for r in rows]
            db.executemany("DELETE FROM continuations WHERE cwd = ?", [(c,) for c in cwds])
        return cwds

    def begin_turn(self, turn: PendingTurn) -> None:
        """Journal a run about to start (replacing what an earlier run in the place left)."""
        with self._db(write=True) as db:
            db.execute(
                "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?)",
                (turn.cwd, turn.resumed, turn.saved, json.dumps(turn.before)),
            )

    def end_turn(self, cwd: str) -> None:
        """Forget the journal entry of the run in ``cwd`` (undone, or nothing to undo)."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM turns WHERE cwd = ?", (cwd,))

    def pending_turns(self) -> list[PendingTurn]:
        """The runs journaled and never ended: at start-up, those a crash cut."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute("SELECT cwd, resumed, saved, before FROM turns").fetchall()
        return [PendingTurn(c, r, s, tuple(json.loads(b))) for c, r, s, b in rows]


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring the database to ``SCHEMA_VERSION``: create it, migrate the first release's
    table (its sessions go to ``NO_KEY_TENANT``), create the tables a version lacks. One
    transaction; the version is read again inside it, since another connection may have
    upgraded meanwhile."""
    db.execute("PRAGMA journal_mode=WAL")  # kept in the file; not allowed in a transaction
    db.execute("BEGIN IMMEDIATE")
    with db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this server's ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        legacy = (
            version == 0
            and db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
            ).fetchone()
        )
        if legacy:
            db.execute("ALTER TABLE sessions RENAME TO sessions_v0")
        for table in SCHEMA:
            db.execute(table)
        if legacy:
            db.execute(
                f"INSERT INTO sessions ({COLUMNS}) SELECT ?, {V0_COLUMNS} FROM sessions_v0",
                (NO_KEY_TENANT,),
            )
            db.execute("DROP TABLE sessions_v0")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
