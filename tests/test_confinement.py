"""What a Claude Code process can reach, read off live processes and the file system.

- The CLI's environment (``/proc/<cli>/environ``) holds the allowed variables and its
  place, never the server's keys, unrelated ``.env`` entries or systemd's socket.
- Files and directories the server and its CLIs make are private (0700 / 0600).
- ``kill -9`` of the server takes its CLIs down within a second (wrapper.sandbox).
- A symlink planted where a session's place will be is refused, never followed.
- With the sandbox, even Bash sees none of the server's state: not the login, not another
  client's transcript, not the session table, not the server's processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.builtin_tools import ASK, SECRET, ask_where, plant
from tests.conftest import MODEL, Server, processes_under, settled, wrapper_process
from tests.mock_anthropic import MockAnthropic, Reply, ToolUse
from wrapper.session_store import NO_KEY_TENANT

KEY = "wrapper-key-never-for-the-cli"


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def start_slow_stream(url: str, nursery: trio.Nursery, **body: Any) -> None:
    async def read() -> None:
        payload = {"model": MODEL, "messages": [ASK], "stream": True, **body}
        headers = {"authorization": f"Bearer {KEY}"}
        with contextlib.suppress(httpx.HTTPError):  # the server may be killed meanwhile
            async with (
                httpx.AsyncClient(timeout=30) as http,
                http.stream(
                    "POST", f"{url}/v1/chat/completions", json=payload, headers=headers
                ) as r,
            ):
                async for _ in r.aiter_lines():
                    pass

    nursery.start_soon(read)


async def one_cli(tmp_path: Path) -> int:
    with trio.fail_after(20):
        while not (found := processes_under(tmp_path / "runs")):  # noqa: ASYNC110
            await trio.sleep(0.05)
    [pid] = found
    return pid


async def test_the_cli_inherits_only_what_it_needs(mock: MockAnthropic, tmp_path: Path) -> None:
    mock.default = Reply.text("x" * 40, pieces=40, delay=0.1)
    dotenv = tmp_path / "server.env"
    dotenv.write_text("UNRELATED_SECRET=from-dotenv\nANTHROPIC_MODEL=from-dotenv\n")
    env = {
        "API_KEYS": KEY,
        "NOTIFY_SOCKET": str(tmp_path / "no-systemd"),
        "SANDBOX": "off",
        # A stateless run's place is run-* (a continued conversation's is under chains/).
        "SESSION_AUTO_CONTINUE": "false",
    }
    async with (
        wrapper_process(mock, tmp_path, "--env-file", str(dotenv), **env) as (_, url),
        trio.open_nursery() as nursery,
    ):
        await start_slow_stream(url, nursery)
        seen = environ(await one_cli(tmp_path))
        nursery.cancel_scope.cancel()
    text = "\n".join(f"{k}={v}" for k, v in seen.items())
    assert KEY not in text
    assert not {"API_KEYS", "NOTIFY_SOCKET", "UNRELATED_SECRET", "CLAUDE_CWD"} & set(seen)
    assert seen["ANTHROPIC_MODEL"] == "from-dotenv"
    assert seen["ANTHROPIC_BASE_URL"] == mock.url
    place = Path(seen["HOME"])
    assert place.parent == tmp_path / "runs" and place.name.startswith("run-")
    assert seen["CLAUDE_CONFIG_DIR"] == str(place / "claude")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_files_and_directories_are_private(mock: MockAnthropic, tmp_path: Path) -> None:
    write = ToolUse("Write", {"file_path": "made.txt", "content": "by a tool"}, id="toolu_w")
    mock.script(Reply.tool_calls(write), Reply.text("Written."))
    async with (
        wrapper_process(mock, tmp_path, API_KEYS=KEY, SANDBOX="off") as (_, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        body = {"model": MODEL, "messages": [ASK], "enable_tools": True, "session_id": "s1"}
        with trio.fail_after(30):
            r = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
            )
        assert r.status_code == 200, r.text
    state = tmp_path / "home" / ".local" / "state" / "claude-wrapper"
    runs = tmp_path / "runs"
    [made] = runs.glob("sessions/*/work/made.txt")
    [transcript] = runs.glob("sessions/*/claude/projects/*/*.jsonl")
    directories = [state, runs, *runs.glob("sessions/**/")]
    files = [made, transcript, *state.glob("sessions.sqlite3*")]
    assert {p: mode(p) for p in directories} == dict.fromkeys(directories, 0o700)
    assert {p: mode(p) for p in files} == dict.fromkeys(files, 0o600)


@pytest.mark.parametrize("sandbox", ["off", "bwrap"])
async def test_kill_9_takes_the_clis_down(
    mock: MockAnthropic, tmp_path: Path, sandbox: str
) -> None:
    mock.default = Reply.text("y" * 100, pieces=100, delay=0.1)  # a 10 s answer
    async with wrapper_process(mock, tmp_path, API_KEYS=KEY, SANDBOX=sandbox) as (process, url):
        async with trio.open_nursery() as nursery:
            await start_slow_stream(url, nursery)
            await one_cli(tmp_path)
            with trio.fail_after(20):
                while not mock.messages:  # noqa: ASYNC110 - answering upstream
                    await trio.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            nursery.cancel_scope.cancel()
        # The launcher checks its parent twice a second.
        assert await settled(lambda: processes_under(tmp_path / "runs"), within=3) == []
    with trio.fail_after(5):
        while mock.messages[0].aborted_at is None:  # noqa: ASYNC110
            await trio.sleep(0.05)


SNOOP = (
    "cat ~/../../home/.claude/.credentials.json; grep -rl oat01 ../..; ls ../..;"
    " cat $STATE/sessions.sqlite3; echo; echo processes: $(ls -d /proc/[0-9]* | wc -l)"
)


@pytest.mark.parametrize(("sandbox", "contained"), [("bwrap", True), ("off", False)])
async def test_the_sandbox_hides_the_servers_state_even_from_bash(
    start_server: Any, mock: MockAnthropic, tmp_path: Path, sandbox: str, contained: bool
) -> None:
    server = await start_server(tools_allowed=("Bash",), sandbox=sandbox)
    plant(server, tmp_path)
    state = server.config.state_dir
    (state / "sessions.sqlite3").write_text("the session table")
    command = SNOOP.replace("$STATE", str(state))
    snoop = ToolUse("Bash", {"command": command, "description": "look around"}, id="toolu_s")
    mock.script(Reply.tool_calls(snoop), Reply.text("Done."))
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True)
    assert r.status_code == 200, r.text
    output, _ = mock.messages[1].tool_result(snoop.id)
    leaked = [s for s in (SECRET, "the session table", "/other/") if s in output]
    assert (leaked == []) is contained, output
    processes = int(output.split("processes:")[1].split()[0])
    # Sandboxed, it sees its own processes only (bwrap's init, the CLI, the shell...).
    assert (processes < 10) is contained, output


async def test_a_symlink_planted_at_a_sessions_place_is_not_followed(
    server: Server, mock: MockAnthropic, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    sessions = server.config.workdir / "sessions"
    sessions.mkdir()
    digest = hashlib.sha256(f"{NO_KEY_TENANT}\0s1".encode()).hexdigest()[:32]
    (sessions / digest).symlink_to(target)
    write = ToolUse("Write", {"file_path": "planted.txt", "content": "x"}, id="toolu_p")
    mock.script(Reply.tool_calls(write), Reply.text("Written."))
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True, session_id="s1")
    assert r.status_code == 500, r.text
    assert r.json()["error"]["code"] == "workdir_unavailable"
    assert list(target.iterdir()) == []
    assert mock.messages == []
