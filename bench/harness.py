"""What the benchmarks stand on: the mock API, and the server in-process or as a process of
its own (``python -m wrapper``, for what needs a real process: signals, memory), offline.

Every file goes under a fresh temporary directory (the CLI's HOME, scratch and state
directories), so a benchmark never touches the user's own Claude Code state.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import offline_env
from tests.mock_anthropic import MockAnthropic
from wrapper.config import Config
from wrapper.server import serve

ROOT = Path(__file__).resolve().parent.parent
_logs = itertools.count()


@asynccontextmanager
async def serving(mock: MockAnthropic, **overrides: Any) -> AsyncIterator[str]:
    """Run ``mock`` and a server in front of it (rate limits off); yield the server's URL."""
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        home = Path(tempfile.mkdtemp())
        config = Config(
            port=0,
            claude_env=offline_env(mock.url, home),
            workdir=home / "runs",
            state_dir=home / "state",
            rate_limit_enabled=False,
            **overrides,
        )
        stop = trio.Event()

        async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(config, shutdown=stop, task_status=task_status)

        (url,) = await nursery.start(run_server)
        yield url
        stop.set()
        nursery.cancel_scope.cancel()  # the mock serves until cancelled


@attrs.define
class ServerProcess:
    """``python -m wrapper`` as its own process, its log in ``<root>/server-<n>.log``."""

    process: trio.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def server_environment(mock_url: str, root: Path, **env: str) -> dict[str, str]:
    """The server's environment: offline, everything below ``root`` (HOME ``root/home``,
    workdir ``root/runs``), rate limits off, then ``env``."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        **offline_env(mock_url, root / "home"),
        "CLAUDE_CWD": str(root / "runs"),
        "RATE_LIMIT_ENABLED": "false",
        "SESSION_AUTO_CONTINUE": "false",  # stateless runs leave no place behind
        **env,
    }


@asynccontextmanager
async def server_process(mock_url: str, root: Path, **env: str) -> AsyncIterator[ServerProcess]:
    """Start the server, yield it once it listens, kill it (if still running) on exit.
    Its stderr goes to a file: a pipe nobody reads would stall a busy server's logging."""
    log = root / f"server-{next(_logs)}.log"
    command = [sys.executable, "-m", "wrapper", "--port", "0", "--env-file", "/nonexistent"]
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            command, env=server_environment(mock_url, root, **env), stderr=out, cwd=ROOT
        )
    try:
        with trio.fail_after(30):
            while not (found := re.search(rb"listening on (http://[\d.]+:\d+)", log.read_bytes())):
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
                await trio.sleep(0.05)
        yield ServerProcess(process, found[1].decode(), log)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@attrs.define
class FaultyMock(MockAnthropic):
    """The mock API, and faults it plays on the next ``POST /v1/messages`` requests:
    ``("hang", 0)`` sends nothing until the client leaves; ``("stall", n)`` stops after n
    messages of its answer (status line and SSE events), ``("drop", n)`` breaks the
    connection there."""

    faults: deque[tuple[str, int]] = attrs.field(factory=deque)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        fault = None
        if scope["type"] == "http" and scope["path"] == "/v1/messages" and self.faults:
            fault = self.faults.popleft()
        if fault is None:
            return await super().app(scope, receive, send)
        kind, after = fault
        sent = 0

        async def faulty_send(message: dict[str, Any]) -> None:
            nonlocal sent
            if sent >= after:
                if kind == "drop":
                    raise ConnectionAbortedError("mock: dropped")
                await trio.sleep_forever()  # cancelled when the client leaves
            sent += 1
            await send(message)

        # A drop escapes the app: hypercorn then breaks the connection mid-answer.
        await super().app(scope, receive, faulty_send)
        return None
