"""Fixtures, and the helpers more than one test module uses: the mock Anthropic API, the
server in-process or as a process, the real CLI and client; what runs leave behind; the
shapes answers must have (error envelopes, SSE frames).

Everything listens on 127.0.0.1 port 0. The CLI gets its own HOME per test and the
environment that keeps it offline (see ../shared/CLAUDE_CLI.md).

A helper two test modules share is defined here, or in a plain module of tests/ named for
its role (raw_http, conversations, builtin_tools), never in a test module; bench/ imports
from the same places.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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

MODEL = "claude-sonnet-4-5"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
# A client function, as OpenAI's clients define one.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_SCHEMA,
    },
}


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


def required_tool(name: str) -> str:
    """The path of a command the checks need; a clear failure (not a skip) without it."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"], "/usr/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} is not installed: `make contrib-deps` installs it", pytrace=False)
    return path


# --- what runs leave behind -----------------------------------------------------------


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


def processes_in(root: Path) -> list[int]:
    """Every process (CLI, launcher, sandbox, shell) working in ``root`` or below it."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append(int(entry.name))
    return found


def processes_under(root: Path) -> list[int]:
    """The Claude Code CLIs among ``processes_in(root)``, whoever started them."""
    found = []
    for pid in processes_in(root):
        try:
            if Path(os.readlink(f"/proc/{pid}/exe")).name == "claude":
                found.append(pid)
        except OSError:
            continue
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


def transcripts(root: Path) -> list[Path]:
    """Transcripts the CLI left in the places below ``root`` (the server removes each
    run's) or in its HOME (where none may be: each run has a config dir of its own)."""
    found = []
    for base in (root / "home" / ".claude" / "projects", root / "runs"):
        for directory, _, files in os.walk(base):  # unlike glob, fine with dirs vanishing
            found += [Path(directory) / name for name in files if name.endswith(".jsonl")]
    return sorted(found)


async def left_behind(server: Server, tmp_path: Path) -> tuple[list[int], list[Path], list[Path]]:
    """CLI processes, transcripts and scratch directories still there after the runs."""
    return (
        await wait_for_no_cli(),
        await settled(lambda: transcripts(tmp_path)),
        await settled(lambda: sorted(server.config.workdir.glob("*"))),
    )


# --- the shapes of answers ------------------------------------------------------------


def envelope_error(payload: Any) -> dict[str, Any]:
    """The ``error`` of an OpenAI envelope; fails unless ``payload`` is exactly one."""
    assert isinstance(payload, dict) and list(payload) == ["error"], payload
    error: dict[str, Any] = payload["error"]
    assert sorted(error) == ["code", "message", "param", "type"], error
    assert isinstance(error["message"], str) and error["message"], error
    return error


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
    error = envelope_error(response.json())
    assert (error["type"], error["param"], error["code"]) == (error_type, param, code)
    return str(error["message"])


def sse_data(raw: str) -> list[str]:
    """The ``data`` of each SSE frame of ``raw``, in order (comments left out)."""
    return [f.removeprefix("data: ") for f in raw.split("\n\n") if f.startswith("data: ")]


def sse_frames(raw: str) -> list[Any]:
    """The JSON frames of a stream that ended with ``[DONE]``."""
    frames = sse_data(raw)
    assert frames[-1] == "[DONE]", raw
    return [json.loads(f) for f in frames[:-1]]


async def stream_raw(http: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    """The JSON frames of a streamed chat completion that must succeed."""
    with trio.fail_after(30):
        async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            raw = (await r.aread()).decode()
    assert r.status_code == 200, raw
    return sse_frames(raw)


def sample(text: str, line: str) -> float:
    """The value of the metric ``line`` (a name and its labels) in Prometheus ``text``."""
    match = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    assert match, f"{line} not in metrics"
    return float(match[1])


async def metric(http: httpx.AsyncClient, line: str, **kw: Any) -> float:
    """``line``'s value in the server's ``/metrics`` now (the scrape counts as a request)."""
    return sample((await http.get("/metrics", **kw)).text, line)


# --- the server -----------------------------------------------------------------------


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


@asynccontextmanager
async def wrapper_process(
    mock: MockAnthropic, tmp_path: Path, *args: str, **env: str
) -> AsyncIterator[tuple[trio.Process, str]]:
    """The server as a process of its own (``python -m wrapper``), and its URL."""
    (tmp_path / "home").mkdir(exist_ok=True)
    environ = {
        **os.environ,
        **offline_env(mock.url, tmp_path / "home"),
        "CLAUDE_CWD": str(tmp_path / "runs"),
        **env,
    }
    command = [sys.executable, "-m", "wrapper", "--port", "0", "--env-file", "/nonexistent", *args]
    process = await trio.lowlevel.open_process(command, env=environ, stderr=subprocess.PIPE)
    assert process.stderr is not None
    log = b""
    try:
        with trio.fail_after(20):
            while b"listening on " not in log:
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
        url = log.split(b"listening on ", 1)[1].split()[0].decode().rstrip(",")
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


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
