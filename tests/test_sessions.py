"""Sessions through the real server, the real CLI and the mock: the client sends only the
new turn; Claude gets the earlier ones as real messages, from the resumed transcript."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import MODEL, Server, metric, settled, transcripts, wrapper_process
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
from tests.mock_anthropic import MockAnthropic, Reply, ToolUse
from wrapper.config import load


@pytest.mark.parametrize("stream", [False, True])
async def test_a_session_keeps_its_context(
    server: Server, mock: MockAnthropic, tmp_path: Path, stream: bool
) -> None:
    mock.script(Reply.text(GREETING, input_tokens=10, output_tokens=4), Reply.text("Ada."))
    async with server.http() as http:
        if stream:
            assert await ask_streamed(http, chat(NAME)) == GREETING
            assert await ask_streamed(http, chat(QUESTION)) == "Ada."
        else:
            first = await ask(http, chat(NAME))
            assert first.json()["choices"][0]["message"]["content"] == GREETING
            await ask(http, chat(QUESTION))
        _, second = mock.messages
        assert holds_first_turn(second)
        details = (await http.get("/v1/sessions/s1")).json()
    assert details["id"] == "s1"
    assert details["message_count"] == 4
    assert details["model"] == MODEL
    assert details["usage"]["prompt_tokens"] >= 10
    assert details["usage"]["total_tokens"] > details["usage"]["prompt_tokens"]
    assert details["cost_usd"] > 0
    assert details["created"] <= details["last_used"] < details["expires_at"]
    # The session's transcript stays (it is the session); its directory is its own.
    assert len(transcripts(tmp_path)) == 1
    assert [p.name for p in server.config.workdir.iterdir()] == ["sessions"]


async def test_header_alone_names_the_session(server: Server, mock: MockAnthropic) -> None:
    mock.script(Reply.text(GREETING), Reply.text("Ada."))
    async with server.http() as http:
        for text in (NAME, QUESTION):
            response = await ask(http, chat(text, None), headers={"x-session-id": "h-1"})
            assert response.status_code == 200
    assert holds_first_turn(mock.messages[1])


@pytest.mark.parametrize(
    ("body_id", "header_id"),
    [
        ("", None),
        ("a" * 129, None),
        ("has space", None),
        ("a/b", None),
        # Only dots: path steps to URLs and proxies.
        (".", None),
        ("..", None),
        (None, "..."),
        (None, "bad id!"),
        ("same", "other"),
    ],
)
async def test_bad_session_ids_are_refused(
    server: Server, mock: MockAnthropic, body_id: str | None, header_id: str | None
) -> None:
    headers = {"x-session-id": header_id} if header_id is not None else {}
    async with server.http() as http:
        response = await ask(http, chat("hi", body_id), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "session_id"
    assert mock.messages == []


async def test_endpoints(server: Server, mock: MockAnthropic, tmp_path: Path) -> None:
    mock.script(Reply.text(GREETING), Reply.text("ok"))
    async with server.http() as http:
        await ask(http, chat(NAME, "one"))
        await ask(http, chat("hello", "two"))
        listing = (await http.get("/v1/sessions")).json()
        assert listing["object"] == "list"
        assert sorted(s["id"] for s in listing["data"]) == ["one", "two"]
        stats = (await http.get("/v1/sessions/stats")).json()
        assert stats["sessions"] == 2
        assert stats["messages"] == 4
        assert stats["ttl_seconds"] == 3600
        metrics = (await http.get("/metrics")).text
        assert "\nwrapper_sessions 2\n" in metrics
        for method in ("GET", "DELETE"):
            for unknown in ("nope", "bad%20id", "...", "%2E%2E", "%2e"):
                missing = await http.request(method, f"/v1/sessions/{unknown}")
                assert missing.status_code == 404
                assert missing.json()["error"]["code"] == "session_not_found"
        assert len(transcripts(tmp_path)) == 2
        deleted = await http.delete("/v1/sessions/one")
        assert deleted.json() == {"id": "one", "object": "session.deleted", "deleted": True}
        assert (await http.get("/v1/sessions/one")).status_code == 404
        assert [s["id"] for s in (await http.get("/v1/sessions")).json()["data"]] == ["two"]
    assert len(transcripts(tmp_path)) == 1
    assert len(list((server.config.workdir / "sessions").iterdir())) == 1


async def test_expired_sessions_are_reaped(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    server = await start_server(session_ttl=0.5)
    async with server.http() as http:
        await ask(http, chat(NAME))
        assert (await http.get("/v1/sessions/s1")).status_code == 200
        assert await settled(lambda: transcripts(tmp_path)) == []
        assert await settled(lambda: list((server.config.workdir / "sessions").iterdir())) == []
        assert (await http.get("/v1/sessions/s1")).status_code == 404


async def test_turns_of_one_session_are_ordered(server: Server, mock: MockAnthropic) -> None:
    # The first answer is held until the second request is in; that one waits for it.
    release = trio.Event()
    mock.script(Reply.text(GREETING, hold=release), Reply.text("Ada."))
    answers: dict[str, str] = {}
    async with server.http() as http:

        async def send(text: str) -> None:
            response = await ask(http, chat(text))
            answers[text] = response.json()["choices"][0]["message"]["content"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, NAME)
            await mock.request_arrived.wait()  # the first turn runs, holding the session
            nursery.start_soon(send, QUESTION)
            # Both in the server (and the scrape): the second waits for the first.
            while await metric(http, "wrapper_active_requests") < 3:  # noqa: ASYNC110
                await trio.sleep(0.02)
            release.set()
        details = (await http.get("/v1/sessions/s1")).json()
    assert answers == {NAME: GREETING, QUESTION: "Ada."}
    assert holds_first_turn(mock.messages[1])
    assert details["message_count"] == 4


async def test_a_failed_run_leaves_the_session_as_it_was(
    server: Server, mock: MockAnthropic
) -> None:
    mock.script(
        Reply.text(GREETING), Reply.error(529, "overloaded_error"), Reply.text("Still Ada.")
    )
    async with server.http() as http:
        await ask(http, chat(NAME))
        before = (await http.get("/v1/sessions/s1")).json()
        failed = await ask(http, chat("This turn fails."))
        assert failed.status_code == 503
        assert (await http.get("/v1/sessions/s1")).json() == before
        await ask(http, chat(QUESTION))
    last = mock.messages[-1]
    assert holds_first_turn(last)
    assert "This turn fails." not in last.all_text


async def test_a_failed_first_turn_leaves_no_session(server: Server, mock: MockAnthropic) -> None:
    mock.script(Reply.error(529, "overloaded_error"))
    async with server.http() as http:
        assert (await ask(http, chat(NAME))).status_code == 503
        assert (await http.get("/v1/sessions/s1")).status_code == 404
    assert list((server.config.workdir / "sessions").iterdir()) == []


async def test_a_vanished_transcript_is_a_clear_error(
    server: Server, mock: MockAnthropic, tmp_path: Path
) -> None:
    async with server.http() as http:
        await ask(http, chat(NAME))
        [path] = transcripts(tmp_path)
        path.unlink()
        response = await ask(http, chat(QUESTION))
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "session_transcript_missing"
        # Deleting it clears the way for a new start under the same id.
        assert (await http.delete("/v1/sessions/s1")).status_code == 200
        assert (await ask(http, chat(NAME))).status_code == 200
    assert len(mock.messages) == 2


async def test_function_calling_is_refused_in_a_session(
    server: Server, mock: MockAnthropic
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with server.http() as http:
        response = await ask(http, chat("hi", tools=tools))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unsupported_in_session"
        # Without a session, function calling works as before.
        mock.script(Reply.tool_calls(ToolUse("f", {})))
        plain = await ask(http, chat("hi", None, tools=tools))
        assert plain.json()["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_session_survives_kill_9(mock: MockAnthropic, tmp_path: Path) -> None:
    mock.script(Reply.text(GREETING), Reply.text("Ada."))
    state = {"WRAPPER_STATE_DIR": str(tmp_path / "state")}
    async with wrapper_process(mock, tmp_path, **state) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await ask(http, chat(NAME))).status_code == 200
        process.send_signal(signal.SIGKILL)
    async with (
        wrapper_process(mock, tmp_path, **state) as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        response = await ask(http, chat(QUESTION))
        assert response.json()["choices"][0]["message"]["content"] == "Ada."
        assert (await http.get("/v1/sessions/s1")).json()["message_count"] == 4
    assert holds_first_turn(mock.messages[1])


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"),
        ({"STATE_DIRECTORY": "/var/lib/a", "WRAPPER_STATE_DIR": "/srv/w"}, "/srv/w"),
        ({"XDG_STATE_HOME": "/home/u/.state"}, "/home/u/.state/claude-wrapper"),
        ({"HOME": "/home/u"}, "/home/u/.local/state/claude-wrapper"),
    ],
)
def test_state_directory_setting(environ: dict[str, str], expected: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", environ.get("HOME", "/home/u"))
        config = load(["--env-file", "/nonexistent"], environ)
    assert config.state_dir == Path(expected)


def test_session_ttl_setting() -> None:
    assert load(["--env-file", "/nonexistent"], {}).session_ttl == 3600
    assert load(["--env-file", "/nonexistent"], {"SESSION_TTL": "90"}).session_ttl == 90


# Automatic continuation: stateless clients that resend their history.


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stateless_conversation_continues_its_claude_session(
    start_server: Any, mock: MockAnthropic, tmp_path: Path, stream: bool
) -> None:
    server = await start_server()
    mock.script(Reply.text(GREETING), Reply.text("Ada."), Reply.text("Still Ada."))
    async with server.http() as http:
        if stream:
            assert await ask_streamed(http, history(NAME)) == GREETING
            assert await ask_streamed(http, history(NAME, GREETING, QUESTION)) == "Ada."
        else:
            await ask(http, history(NAME))
            await ask(http, history(NAME, GREETING, QUESTION))
        await ask(http, history(NAME, GREETING, QUESTION, "Ada.", "Again?"))
    _, second, third = mock.messages
    # Each continuation went upstream as the resumed transcript plus only the new turn.
    assert holds_first_turn(second)
    assert holds_first_turn(third, "Again?")
    assert ("assistant", "Ada.") in third.turns
    assert "Be brief." in third.system_text
    assert transcripts(tmp_path)  # kept for the next turn, until SESSION_TTL


async def test_diverging_history_is_never_continued(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server()
    mock.script(Reply.text(GREETING), Reply.text("one"), Reply.text("two"), Reply.text("three"))
    async with server.http() as http:
        await ask(http, history(NAME))
        await ask(http, history(NAME, GREETING, "First branch?"))
        # A regenerate from the same point: the fork left the answered session as it was.
        await ask(http, history(NAME, GREETING, "Second branch?"))
        # An edited answer: matches nothing, so the whole history is sent as before.
        await ask(http, history(NAME, "Hello, Bob.", QUESTION))
    _, first, second, edited = mock.messages
    assert holds_first_turn(first, "First branch?")
    assert holds_first_turn(second, "Second branch?")
    assert "First branch?" not in second.all_text
    assert "<conversation_history>" in edited.last_user_text
    assert len(edited.turns) == 1


async def test_auto_continuation_can_be_turned_off(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    # Off: the history is rendered every time, and nothing is kept for it.
    server: Server = await start_server(session_auto_continue=False)
    mock.script(Reply.text(GREETING), Reply.text("Ada."))
    async with server.http() as http:
        await ask(http, history(NAME))
        await ask(http, history(NAME, GREETING, QUESTION))
    assert "<conversation_history>" in mock.messages[1].last_user_text
    assert await settled(lambda: transcripts(tmp_path)) == []
    assert load(["--env-file", "/nonexistent"], {}).session_auto_continue is True
    off = load(["--env-file", "/nonexistent"], {"SESSION_AUTO_CONTINUE": "false"})
    assert off.session_auto_continue is False


async def test_continuation_transcripts_expire(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    server = await start_server(session_ttl=0.5)
    async with server.http() as http:
        await ask(http, history(NAME))
    assert await settled(lambda: transcripts(tmp_path)) == []
    assert await settled(lambda: list((server.config.workdir / "chains").iterdir())) == []
