"""The session table: SQLite in the state directory, plain blocking code (no Trio).

wrapper.sessions calls every function here through ``trio.to_thread.run_sync``. Each call
opens its own connection and closes it: sqlite3 connections must not cross threads, and
one connect costs ~0.1 ms, nothing next to a Claude Code run (hundreds of ms).

Rules kept here:
- WAL journal: readers (the listing endpoints) never block the writer that records a turn.
- A row is written only after a run succeeded (``record_turn``), so a failed run never
  changes what the table says about a session.
- Times are Unix seconds (``time.time()``): they must survive a restart of the server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import attrs

DB_NAME = "sessions.sqlite3"
# A writer waits this long for another connection's lock before giving up (seconds).
BUSY_TIMEOUT = 10.0

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    claude_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    message_count INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL
)
""",
    # Automatic continuation: the hash of a conversation this server answered (up to and
    # including its answer) -> the Claude session holding it, in its chain's directory.
    """
CREATE TABLE IF NOT EXISTS continuations (
    key TEXT PRIMARY KEY,
    claude_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    last_used REAL NOT NULL
)
""",
)
COLUMNS = (
    "id, claude_session_id, cwd, model, created, last_used, message_count,"
    " prompt_tokens, completion_tokens, cost_usd"
)


@attrs.frozen
class SessionRow:
    """One session as stored."""

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


class Store:
    """The session table in ``state_dir``; every method blocks (call it from a thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / DB_NAME

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            for table in SCHEMA:
                db.execute(table)
            with db:  # one transaction, committed on success
                yield db

    def get(self, session_id: str) -> SessionRow | None:
        with self._db() as db:
            row = db.execute(f"SELECT {COLUMNS} FROM sessions WHERE id = ?", (session_id,))
            found = row.fetchone()
        return SessionRow(*found) if found else None

    def all(self) -> list[SessionRow]:
        with self._db() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM sessions ORDER BY last_used DESC")
            return [SessionRow(*r) for r in rows.fetchall()]

    def count(self) -> int:
        if not self.path.exists():  # nothing stored yet: do not create a database to say so
            return 0
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def record_turn(self, session_id: str, cwd: str, turn: TurnRecord, now: float) -> None:
        """Add a turn to the session, creating its row on its first turn."""
        with self._db() as db:
            db.execute(
                f"INSERT INTO sessions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET claude_session_id = excluded.claude_session_id,"
                " model = excluded.model, last_used = excluded.last_used,"
                " message_count = message_count + excluded.message_count,"
                " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens = completion_tokens + excluded.completion_tokens,"
                " cost_usd = cost_usd + excluded.cost_usd",
                (
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

    def delete(self, session_id: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def expired(self, before: float) -> list[SessionRow]:
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM sessions WHERE last_used < ?", (before,))
            return [SessionRow(*r) for r in rows.fetchall()]

    def continuation(self, key: str, now: float) -> tuple[str, str] | None:
        """(claude session id, cwd) of the conversation hashed as ``key``; renews it."""
        with self._db() as db:
            found = db.execute(
                "SELECT claude_session_id, cwd FROM continuations WHERE key = ?", (key,)
            ).fetchone()
            if found:
                db.execute("UPDATE continuations SET last_used = ? WHERE key = ?", (now, key))
        return (str(found[0]), str(found[1])) if found else None

    def record_continuation(self, key: str, claude_session_id: str, cwd: str, now: float) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO continuations VALUES (?, ?, ?, ?)",
                (key, claude_session_id, cwd, now),
            )

    def expire_chains(self, before: float) -> list[str]:
        """Forget the chains (directories) none of whose conversations was used since
        ``before``; return their directories, for the caller to remove."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(
                "SELECT cwd FROM continuations GROUP BY cwd HAVING MAX(last_used) < ?", (before,)
            ).fetchall()
            cwds = [str(r[0]) for r in rows]
            db.executemany("DELETE FROM continuations WHERE cwd = ?", [(c,) for c in cwds])
        return cwds
