"""Tenants through the real server: with API keys, each key's sessions and conversations
are its own; the session table of the first release migrates; listing pages; caps; a
store that fails after a paid run still gives the client its answer."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import Server, transcripts
from tests.conversations import (
    GREETING,
    NAME,
    QUESTION,
    ask,
    ask_streamed,
    chat,
    history,
    holds_first_turn,
)
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.config import load
from wrapper.session_store import DB_NAME, NO_KEY_TENANT, SCHEMA_VERSION, Store, TurnRecord

KEY_A, KEY_B, KEY_C = "key-a-1234", "key-b-5678", "key-c-9012"


def as_key(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_keys_do_not_see_each_others_sessions(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(api_keys=(KEY_A, KEY_B))
    mock.script(Reply.text(GREETING), Reply.text("Who are you?"), Reply.text("Ada."))
    a, b = as_key(KEY_A), as_key(KEY_B)
    async with server.http() as http:
        assert (await ask(http, chat(NAME), headers=a)).status_code == 200
        # Key b: a's session does not exist, whatever the route.
        for method, path in [
            ("GET", "/v1/sessions/s1"),
            ("DELETE", "/v1/sessions/s1"),
        ]:
            refused = await http.request(method, path, headers=b)
            assert refused.status_code == 404, (method, path)
            assert refused.json()["error"]["code"] == "session_not_found"
        assert (await http.get("/v1/sessions", headers=b)).json()["data"] == []
        assert (await http.get("/v1/sessions/stats", headers=b)).json()["sessions"] == 0
        # The same id under key b is a new session: a's turn never goes upstream for b.
        assert (await ask(http, chat(QUESTION), headers=b)).status_code == 200
        assert NAME not in mock.messages[1].all_text
        # Key a's session kept its context, and is still a's alone.
        assert (await ask(http, chat(QUESTION), headers=a)).status_code == 200
        assert holds_first_turn(mock.messages[2])
        mine = (await http.get("/v1/sessions/s1", headers=a)).json()
        theirs = (await http.get("/v1/sessions/s1", headers=b)).json()
        assert (mine["message_count"], theirs["message_count"]) == (4, 2)
        assert (await http.get("/v1/sessions/stats", headers=a)).json()["messages"] == 4
        assert (await http.delete("/v1/sessions/s1", headers=b)).status_code == 200
        assert (await http.get("/v1/sessions/s1", headers=a)).status_code == 200
    # Two sessions had two directories; b's went with its delete.
    assert len(list((server.config.workdir / "sessions").iterdir())) == 1


async def test_continuation_never_crosses_keys(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(api_keys=(KEY_A, KEY_B))
    mock.script(Reply.text(GREETING), Reply.text("I do not know."), Reply.text("Ada."))
    later = history(NAME, GREETING, QUESTION)
    async with server.http() as http:
        await ask(http, history(NAME), headers=as_key(KEY_A))
        # Key b sends a's very conversation: answered from the history it sent, not a's.
        await ask(http, later, headers=as_key(KEY_B))
        await ask(http, later, headers=as_key(KEY_A))
    _, theirs, mine = mock.messages
    assert "<conversation_history>" in theirs.last_user_text
    assert len(theirs.turns) == 1
    assert holds_first_turn(mine)


# The first release's table, verbatim: keyed by id alone, no tenant.
V0_SCHEMA = """
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
);
CREATE TABLE IF NOT EXISTS continuations (
    key TEXT PRIMARY KEY,
    claude_session_id TEXT NOT NULL,
    cwd TEXT NOT NULL,
    last_used REAL NOT NULL
);
"""


async def test_a_first_release_database_is_migrated(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(Reply.text(GREETING), Reply.text("Ada."))
    first = await start_server()
    async with first.http() as http:
        assert (await ask(http, chat(NAME))).status_code == 200
    first.stop.set()
    # Rewrite the table as the first release kept it, around the real session's files.
    state = first.config.state_dir
    with closing(sqlite3.connect(state / DB_NAME)) as db:
        row = db.execute(
            "SELECT id, claude_session_id, cwd, model, created, last_used, message_count,"
            " prompt_tokens, completion_tokens, cost_usd FROM sessions"
        ).fetchone()
    for path in state.iterdir():
        path.unlink()
    with closing(sqlite3.connect(state / DB_NAME)) as db, db:
        db.executescript(V0_SCHEMA)
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    server = await start_server()
    keyed = await start_server(api_keys=(KEY_A,))
    async with server.http() as http:
        assert (await http.get("/v1/sessions/s1")).json()["message_count"] == 2
        assert (await ask(http, chat(QUESTION))).status_code == 200
        assert holds_first_turn(mock.messages[1])  # it continued with its context
        assert (await http.get("/v1/sessions/s1")).json()["message_count"] == 4
    async with keyed.http() as http:  # the first release's sessions are the no-key tenant's
        assert (await http.get("/v1/sessions/s1", headers=as_key(KEY_A))).status_code == 404
    with closing(sqlite3.connect(state / DB_NAME)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT tenant, id FROM sessions").fetchall() == [(NO_KEY_TENANT, "s1")]


def seed(state_dir: Path, tenant: str, sessions: list[tuple[str, float]]) -> None:
    """Sessions straight into the store: (id, created) pairs."""
    store = Store(state_dir)
    record = TurnRecord("claude-id", "m", 2, 1, 1, 0.0)
    for session_id, created in sessions:
        store.record_turn(tenant, session_id, f"/nowhere/{session_id}", record, created)


async def test_the_session_list_is_paginated(start_server: Any, tmp_path: Path) -> None:
    now = time.time()
    ids = [f"s{i:02}" for i in range(25)]
    seed(tmp_path / "state", NO_KEY_TENANT, [(s, now + i) for i, s in enumerate(ids)])
    seed(tmp_path / "state", NO_KEY_TENANT, [("tie-a", now + 100), ("tie-b", now + 100)])
    seed(tmp_path / "state", "key:other", [("theirs", now + 200)])
    server = await start_server()
    newest_first = ["tie-b", "tie-a", *reversed(ids)]
    async with server.http() as http:
        default = (await http.get("/v1/sessions")).json()
        assert [s["id"] for s in default["data"]] == newest_first[:20]
        assert default["object"] == "list"
        assert (default["first_id"], default["last_id"]) == (newest_first[0], newest_first[19])
        assert default["has_more"] is True
        seen: list[str] = []
        after: str | None = None
        while True:
            params = {"limit": "7"} | ({"after": after} if after else {})
            page = (await http.get("/v1/sessions", params=params)).json()
            seen += [s["id"] for s in page["data"]]
            after = page["last_id"]
            if not page["has_more"]:
                break
        assert seen == newest_first
        last = (await http.get("/v1/sessions", params={"after": ids[0]})).json()
        assert last == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("limit=-1", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("after=nobody", "after"),
        ("after=", "after"),
        ("after=...", "after"),
        ("after=a%20b", "after"),
    ],
)
async def test_bad_list_parameters_are_named(
    http: httpx.AsyncClient, query: str, param: str
) -> None:
    with trio.fail_after(30):
        response = await http.get(f"/v1/sessions?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_session_caps(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(
        api_keys=(KEY_A, KEY_B, KEY_C), max_sessions=2, max_sessions_per_key=1
    )
    async with server.http() as http:
        assert (await ask(http, chat(NAME, "one"), headers=as_key(KEY_A))).status_code == 200
        refused = await ask(http, chat(NAME, "two"), headers=as_key(KEY_A))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "session_limit_reached"
        assert "API key" in refused.json()["error"]["message"]
        # An existing session keeps working; another key has room of its own.
        assert (await ask(http, chat(QUESTION, "one"), headers=as_key(KEY_A))).status_code == 200
        assert (await ask(http, chat(NAME, "one"), headers=as_key(KEY_B))).status_code == 200
        full = await ask(http, chat(NAME, "three"), headers=as_key(KEY_C))
        assert full.status_code == 403
        assert "server" in full.json()["error"]["message"]
        # A stateless request needs no room.
        assert (await ask(http, chat(NAME, None), headers=as_key(KEY_C))).status_code == 200
    assert len(mock.messages) == 4  # the refused ones never ran


def test_session_cap_settings() -> None:
    defaults = load(["--env-file", "/nonexistent"], {})
    assert (defaults.max_sessions, defaults.max_sessions_per_key) == (10_000, 1_000)
    environ = {"MAX_SESSIONS": "50", "MAX_SESSIONS_PER_KEY": "5"}
    config = load(["--env-file", "/nonexistent"], environ)
    assert (config.max_sessions, config.max_sessions_per_key) == (50, 5)


def failing(*args: Any) -> None:
    raise sqlite3.OperationalError("attempt to write a readonly database")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["session", "continuation"])
async def test_an_answer_that_cannot_be_recorded_still_reaches_the_client(
    start_server: Any,
    mock: MockAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    stream: bool,
    kind: str,
) -> None:
    server: Server = await start_server()
    mock.script(Reply.text(GREETING))
    monkeypatch.setattr(Store, "record_turn", failing)
    monkeypatch.setattr(Store, "record_continuation", failing)
    body = chat(NAME) if kind == "session" else history(NAME)
    async with server.http() as http:
        if stream:
            assert await ask_streamed(http, body) == GREETING
        else:
            response = await ask(http, body)
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == GREETING
        assert (await http.get("/v1/sessions/s1")).status_code == 404  # nothing recorded
    assert "readonly database" in caplog.text
    assert "not recorded" in caplog.text
    # Nothing can reach the run's files again, so none are left behind.
    assert transcripts(tmp_path) == []
    assert list(server.config.workdir.glob("*/*")) == []
