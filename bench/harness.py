"""What both benchmarks stand on: the mock API and the server in-process, offline.

Every file goes under a fresh temporary directory (the CLI's HOME, scratch and state
directories), so a benchmark never touches the user's own Claude Code state.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import offline_env
from tests.mock_anthropic import MockAnthropic
from wrapper.config import Config
from wrapper.server import serve


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
