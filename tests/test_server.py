"""The server as a process: start-up, a port in use, SIGTERM and SIGINT during streams and
with idle connections; and what a draining server answers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests import raw_http
from tests.conftest import offline_env, processes_under, wrapper_process
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper import server as server_module
from wrapper.app import App
from wrapper.config import Config
from wrapper.errors import SHUTDOWN_RETRY_AFTER
from wrapper.server import build_app

CHAT = {
    "model": "claude-sonnet-4-5",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


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


async def test_generate_key_prints_a_fresh_key() -> None:
    with trio.fail_after(30):
        results = [
            await trio.run_process(
                [sys.executable, "-m", "wrapper", "--generate-key"], capture_stdout=True
            )
            for _ in range(2)
        ]
    keys = [r.stdout.decode().strip() for r in results]
    assert keys[0] != keys[1]
    assert all(len(k) >= 40 and k.replace("-", "").replace("_", "").isalnum() for k in keys)


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> bytes:
    while marker not in seen:
        chunk = await stream.receive_some()
        assert chunk, bytes(seen).decode(errors="replace")
        seen += chunk
    return bytes(seen)


def keyless_environ(mock: MockAnthropic, tmp_path: Path) -> dict[str, str]:
    """The server's environment with no API key configured, whatever the caller's has."""
    environ = {**os.environ, **offline_env(mock.url, tmp_path), "CLAUDE_CWD": str(tmp_path / "r")}
    for name in ("API_KEY", "API_KEYS", "API_KEYS_FILE"):
        environ.pop(name, None)
    return environ


async def test_interactive_prompt_generates_a_key(mock: MockAnthropic, tmp_path: Path) -> None:
    import pty

    controller, terminal = pty.openpty()
    environ = keyless_environ(mock, tmp_path)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "wrapper", "--port", "0", "--env-file", "/nonexistent"],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=environ,
    )
    os.close(terminal)
    screen = trio.lowlevel.FdStream(controller)
    assert process.stderr is not None
    try:
        with trio.fail_after(30):
            seen = bytearray()
            await read_until(screen, b"Enable API key protection? (y/N): ", seen)
            await screen.send_all(b"y\n")
            output = await read_until(screen, b"/v1/models", seen)
            key = output.split(b"API key (shown once, keep it): ", 1)[1].split()[0].decode()
            log = bytearray()
            while not (found := re.search(rb"listening on (http://[\d.]+:\d+)\n", log)):
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
            url = found[1].decode()
            async with httpx.AsyncClient(base_url=url) as http:
                refused = await http.get("/v1/models")
                allowed = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
            process.send_signal(signal.SIGTERM)
            await process.wait()
            rest = await process.stderr.receive_some()
    finally:
        if process.returncode is None:
            process.kill()
        await screen.aclose()
    assert len(key) >= 40
    assert f'curl -H "Authorization: Bearer {key}"' in output.decode()
    assert (refused.status_code, allowed.status_code) == (401, 200)
    assert key not in (bytes(log) + rest).decode()  # printed once, on the terminal only


async def test_no_prompt_without_a_terminal_and_a_warning_off_loopback(
    mock: MockAnthropic, tmp_path: Path
) -> None:
    environ = keyless_environ(mock, tmp_path)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "wrapper", "--host", "0.0.0.0", "--port", "0", "--env-file", "/x"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(30):
            log = await read_until(process.stderr, b"listening on", bytearray())
            process.send_signal(signal.SIGTERM)
            await process.wait()
            stdout = await process.stdout.receive_some()
    finally:
        if process.returncode is None:
            process.kill()
    assert b"WARNING" in log
    assert b"NO API key" in log
    assert b"(y/N)" not in stdout


async def test_sigterm_closes_idle_connections_at_once(mock: MockAnthropic, tmp_path: Path) -> None:
    # Before: an idle kept-alive connection held shutdown for the whole grace plus 5 s.
    async with wrapper_process(mock, tmp_path, SHUTDOWN_GRACE="60") as (process, url):
        with trio.fail_after(30):  # far less than the 65 s the old server waited
            idle = await raw_http.connect(url)
            await idle.send_all(raw_http.get("/health"))
            assert (await raw_http.read_response(idle)).status == 200
            process.send_signal(signal.SIGTERM)
            assert await idle.receive_some() == b""
            assert await process.wait() == 0
        await idle.aclose()


async def test_draining_server_answers_open_connections(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The moment between the app starting to drain and hypercorn closing idle connections,
    # held open: a request on a connection that is already open gets a proper 503.
    def draining_app(config: Config) -> App:
        app = build_app(config)
        app.begin_shutdown()
        return app

    monkeypatch.setattr(server_module, "build_app", draining_app)
    server = await start_server()
    with trio.fail_after(30):
        async with server.http() as http:
            health = await http.get("/health")
            # A body in many writes: the answer comes before its end, and must still arrive.
            chat = await http.post(
                "/v1/chat/completions",
                content=b"x" * 1_000_000,
                headers={"content-type": "application/json"},
            )
    assert health.status_code == 503
    assert health.json()["status"] == "draining"
    assert chat.status_code == 503
    assert chat.json()["error"]["code"] == "shutting_down"
    assert chat.headers["retry-after"] == str(SHUTDOWN_RETRY_AFTER)
