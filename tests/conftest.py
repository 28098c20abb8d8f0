"""Fixtures: the mock Anthropic API, the server in-process, the real CLI, the real client.

Everything listens on 127.0.0.1 port 0. The CLI gets its own HOME per test and the
environment that keeps it offline (see ../shared/CLAUDE_CLI.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import openai
import pytest
import trio

from tests.mock_anthropic import MockAnthropic
from wrapper.config import Config
from wrapper.server import serve


def offline_env(mock_url: str, home: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": mock_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        # Otherwise an API error is retried for a minute or two.
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def cli_processes() -> list[int]:
    """Pids of Claude Code CLI processes that are children of this test process."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"claude" in cmdline:
            found.append(int(entry.name))
    return found


async def settled(probe: Callable[[], list[Any]], within: float = 5.0) -> list[Any]:
    """Poll ``probe`` until it finds nothing (or ``within`` seconds pass); return its last
    finding. For what the server cleans up just after the client has its answer."""
    with trio.move_on_after(within):
        while probe():  # noqa: ASYNC110 - /proc and the file system have no event to wait on
            await trio.sleep(0.02)
    return probe()


async def wait_for_no_cli(within: float = 5.0) -> list[int]:
    return await settled(cli_processes, within)


def check_envelope(
    response: httpx.Response,
    status: int,
    *,
    code: str | None,
    param: str | None = None,
    error_type: str = "invalid_request_error",
) -> str:
    """Assert ``response`` is exactly the OpenAI error envelope; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"]
    assert (error["type"], error["param"], error["code"]) == (error_type, param, code)
    assert isinstance(error["message"], str)
    assert error["message"]
    return str(error["message"])


def transcripts(tmp_path: Path) -> list[Path]:
    """Transcripts the CLI left in the test's places (the server removes each run's) or in
    the test's HOME (where none may be: each run has a config dir of its own)."""
    found = []
    for base in (tmp_path / "home" / ".claude" / "projects", tmp_path / "runs"):
        for root, _, files in os.walk(base):  # unlike glob, fine with dirs vanishing meanwhile
            found += [Path(root) / name for name in files if name.endswith(".jsonl")]
    return sorted(found)


@attrs.define
class Server:
    url: str
    config: Config
    stop: trio.Event

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key="unused", max_retries=0, **kw)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@pytest.fixture
async def mock(nursery: trio.Nursery) -> MockAnthropic:
    m = MockAnthropic()
    await nursery.start(m.run)
    return m


@pytest.fixture
def make_config(mock: MockAnthropic, tmp_path: Path) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        (tmp_path / "home").mkdir(exist_ok=True)
        base: dict[str, Any] = {
            "port": 0,
            "workdir": tmp_path / "runs",
            "claude_env": offline_env(mock.url, tmp_path / "home"),
            "shutdown_grace": 2.0,
            "state_dir": tmp_path / "state",
            # Tests of stateless runs expect them to leave nothing behind (test_sessions
            # turns it on).
            "session_auto_continue": False,
        }
        return Config(**{**base, **overrides})

    return make


@pytest.fixture
async def start_server(
    nursery: trio.Nursery, make_config: Callable[..., Config]
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Server] = []

    async def start(**overrides: Any) -> Server:
        config = make_config(**overrides)
        stop = trio.Event()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(config, shutdown=stop, task_status=task_status)

        binds = await nursery.start(run)
        server = Server(binds[0], config, stop)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop.set()


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> Server:
    result: Server = await start_server()
    return result


@pytest.fixture
async def client(server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with server.client() as c:
        yield c


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with server.http() as c:
        yield c
