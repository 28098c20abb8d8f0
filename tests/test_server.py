"""The server as a process: start-up, a port in use, SIGTERM and SIGINT during streams."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import offline_env
from tests.mock_anthropic import MockAnthropic, Reply

CHAT = {
    "model": "claude-sonnet-4-5",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


def processes_under(directory: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found.append(int(entry.name))
    return found


@asynccontextmanager
async def wrapper_process(
    mock: MockAnthropic, tmp_path: Path, *args: str, **env: str
) -> AsyncIterator[tuple[trio.Process, str]]:
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


async def read_stream(url: str, frames: list[str]) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{url}/v1/chat/completions", json=CHAT) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                frames.append(line.removeprefix("data: "))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_cuts_streams_after_grace(
    mock: MockAnthropic, tmp_path: Path, signum: signal.Signals
) -> None:
    mock.default = Reply.text("y" * 100, pieces=100, delay=0.1)  # 10 s answers
    async with wrapper_process(mock, tmp_path, SHUTDOWN_GRACE="1") as (process, url):
        streams: list[list[str]] = [[], [], []]
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for frames in streams:
                    nursery.start_soon(read_stream, url, frames)
                while len(mock.messages) < 3 or not all(streams):  # noqa: ASYNC110
                    await trio.sleep(0.05)
                assert len(processes_under(tmp_path / "runs")) == 3
                process.send_signal(signum)
            assert await process.wait() == 0
    for frames in streams:
        assert json.loads(frames[1])["choices"][0]["delta"]["content"] == "y"
        error = json.loads(frames[-1])["error"]
        assert error["code"] == "shutting_down"
    assert all(m.aborted_at is not None for m in mock.messages)
    assert processes_under(tmp_path / "runs") == []


async def test_sigterm_lets_short_streams_finish(mock: MockAnthropic, tmp_path: Path) -> None:
    mock.default = Reply.text("z" * 10, pieces=10, delay=0.1)  # 1 s answers
    async with wrapper_process(mock, tmp_path, SHUTDOWN_GRACE="10") as (process, url):
        frames: list[str] = []
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_stream, url, frames)
                while not frames:  # noqa: ASYNC110
                    await trio.sleep(0.05)
                process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert frames[-1] == "[DONE]"
    text = "".join(json.loads(f)["choices"][0]["delta"].get("content") or "" for f in frames[:-1])
    assert text == "z" * 10
    assert processes_under(tmp_path / "runs") == []


async def test_port_in_use_is_one_line(mock: MockAnthropic, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(30):
            result = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "wrapper",
                    "--port",
                    str(port),
                    "--env-file",
                    "/nonexistent",
                ],
                capture_stderr=True,
                check=False,
                env={**os.environ, **offline_env(mock.url, tmp_path)},
            )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert (
        lines[-1] == f"error: port {port} on 127.0.0.1 is already in use; set PORT or pass --port"
    )
    assert "Traceback" not in result.stderr.decode()


async def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-m", "wrapper", "--env-file", "/nonexistent"],
            capture_stderr=True,
            check=False,
            env={**os.environ, "MAX_TIMEOUT": "600"},
        )
    assert result.returncode == 2
    assert result.stderr.decode().startswith("error: MAX_TIMEOUT='600' is in milliseconds")
