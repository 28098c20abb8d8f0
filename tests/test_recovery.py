"""Crash recovery through a real server process: ``kill -9`` in the middle of a turn, then a
restart on the same state and workdir. What Claude receives next, the session table and the
database agree again, as if the cut turn had never been asked (wrapper.sessions
``recover``)."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import processes_under, settled, wrapper_process
from tests.conversations import GREETING, NAME, QUESTION, ask, chat, history
from tests.mock_anthropic import MockAnthropic, Recorded, Reply
from wrapper.session_store import DB_NAME, SCHEMA, PendingTurn, SessionRow, Store

CUT = "This turn is cut by kill -9."
# Ten seconds of answer: the server is killed after its first piece.
SLOW = Reply.text("z" * 100, pieces=100, delay=0.1)
# created, last_used, message_count, prompt and completion tokens, cost.
ROW = "1.0, 1.0, 2, 1, 1, 0.0"


@asynccontextmanager
async def server(mock: MockAnthropic, tmp_path: Path) -> AsyncIterator[tuple[trio.Process, str]]:
    """``python -m wrapper`` on the test's state and workdir, each start the same."""
    state = {"WRAPPER_STATE_DIR": str(tmp_path / "state")}
    async with wrapper_process(mock, tmp_path, **state) as (process, url):
        yield process, url


async def kill_9_mid_stream(
    process: trio.Process, url: str, tmp_path: Path, *bodies: dict[str, Any]
) -> None:
    """Stream each body; once every one has text, kill the server with SIGKILL."""
    streaming = [trio.Event() for _ in bodies]

    async def stream(body: dict[str, Any], has_text: trio.Event) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as http,
                http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r,
            ):
                async for line in r.aiter_lines():
                    if '"content":"z' in line:
                        has_text.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for body, has_text in zip(bodies, streaming, strict=True):
                nursery.start_soon(stream, body, has_text)
            for has_text in streaming:
                await has_text.wait()
            process.send_signal(signal.SIGKILL)
            await process.wait()
            nursery.cancel_scope.cancel()
    # The launcher takes the CLIs down (wrapper.sandbox); none writes after the restart.
    assert await settled(lambda: processes_under(tmp_path / "runs"), within=3) == []


def exactly_first_turn_then(sent: Recorded, question: str) -> bool:
    """Claude got turn 1 and the new question, and nothing else: no cut turn, no answer
    Claude Code made up for it ("No response requested.")."""
    turns = sent.turns
    return (
        [role for role, _ in turns] == ["user", "assistant", "user"]
        and turns[0][1].endswith(NAME)
        and turns[1][1] == GREETING
        and turns[2][1].endswith(question)
    )


def integrity(tmp_path: Path) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / DB_NAME)) as db:
        return db.execute("PRAGMA integrity_check").fetchall()


def journal(tmp_path: Path) -> list[PendingTurn]:
    return Store(tmp_path / "state").pending_turns()


async def test_a_turn_cut_by_kill_9_is_rolled_back(mock: MockAnthropic, tmp_path: Path) -> None:
    mock.script(Reply.text(GREETING), SLOW, Reply.text("Ada."))
    async with server(mock, tmp_path) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await ask(http, chat(NAME))).status_code == 200
        await kill_9_mid_stream(process, url, tmp_path, chat(CUT))
    assert len(journal(tmp_path)) == 1  # the cut turn, journaled before it ran
    async with (
        server(mock, tmp_path) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert journal(tmp_path) == []  # undone before the server listened
        response = await ask(http, chat(QUESTION))
        assert response.json()["choices"][0]["message"]["content"] == "Ada."
        details = (await http.get("/v1/sessions/s1")).json()
    assert exactly_first_turn_then(mock.messages[-1], QUESTION), mock.messages[-1].turns
    assert details["message_count"] == 4
    assert integrity(tmp_path) == [("ok",)]


async def test_a_first_turn_cut_by_kill_9_leaves_no_session(
    mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(SLOW)
    async with server(mock, tmp_path) as (process, url):
        await kill_9_mid_stream(process, url, tmp_path, chat(CUT))
    places = tmp_path / "runs" / "sessions"
    assert len(list(places.iterdir())) == 1  # the cut turn's place, with its transcript
    async with (
        server(mock, tmp_path) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert list(places.iterdir()) == []
        assert (await http.get("/v1/sessions/s1")).status_code == 404
        assert (await http.get("/v1/sessions")).json()["data"] == []
    assert integrity(tmp_path) == [("ok",)]


async def test_continuations_cut_by_kill_9(mock: MockAnthropic, tmp_path: Path) -> None:
    """A continued turn forks: its parent stays as it was, and its orphan fork is never
    resumed. A new chain cut before its first answer is removed at the next start."""
    mock.script(Reply.text(GREETING))
    mock.default = SLOW
    chains = tmp_path / "runs" / "chains"
    async with server(mock, tmp_path) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await ask(http, history(NAME))).status_code == 200
        [answered] = chains.iterdir()
        await kill_9_mid_stream(
            process, url, tmp_path, history(NAME, GREETING, CUT), history("Another talk.")
        )
    assert len(list(chains.iterdir())) == 2
    mock.script(Reply.text("Ada."))
    async with (
        server(mock, tmp_path) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        assert list(chains.iterdir()) == [answered]
        response = await ask(http, history(NAME, GREETING, QUESTION))
        assert response.json()["choices"][0]["message"]["content"] == "Ada."
    assert exactly_first_turn_then(mock.messages[-1], QUESTION), mock.messages[-1].turns
    assert integrity(tmp_path) == [("ok",)]


def test_a_version_1_table_gains_the_journal(tmp_path: Path) -> None:
    """A database of the previous release keeps its sessions and gets the ``turns`` table."""
    with contextlib.closing(sqlite3.connect(tmp_path / DB_NAME)) as db, db:
        for table in SCHEMA:
            if "CREATE TABLE IF NOT EXISTS turns" not in table:
                db.execute(table)
        db.execute(f"INSERT INTO sessions VALUES ('t', 's1', 'c', '/nowhere', 'm', {ROW})")
        db.execute("PRAGMA user_version = 1")
    store = Store(tmp_path)
    assert store.get("t", "s1") == SessionRow("t", "s1", "c", "/nowhere", "m", 1, 1, 2, 1, 1, 0)
    store.begin_turn(PendingTurn("/nowhere", "c", b"{}\n", ("c.jsonl",)))
    assert store.pending_turns() == [PendingTurn("/nowhere", "c", b"{}\n", ("c.jsonl",))]
    store.delete("t", "s1")  # a deleted session leaves nothing to undo
    assert store.pending_turns() == []
    assert store.count() == 0


def test_a_lookup_waits_for_a_writer_instead_of_failing(tmp_path: Path) -> None:
    """Journal entries are written beside every run in a lasting place: a continuation
    lookup (a read, then a write) during another write must wait for it, not fail (it
    did, as SQLITE_BUSY, and the conversation was answered from its whole history)."""
    store = Store(tmp_path)
    store.record_continuation("key", "claude-id", "/chain", 1.0)
    found: list[object] = []

    def look_up() -> None:
        try:
            found.append(store.continuation("key", 2.0))
        except sqlite3.Error as exc:
            found.append(exc)

    with contextlib.closing(sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO turns VALUES ('/other', NULL, NULL, '[]')")
        lookup = threading.Thread(target=look_up)
        lookup.start()
        time.sleep(0.3)  # not a measure: lets the lookup reach the lock held here
        other.execute("COMMIT")
        lookup.join(timeout=20)
    assert found == [("claude-id", "/chain")]
