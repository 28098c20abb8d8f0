"""A wedged Claude Code (it reads its input and never answers, deaf to SIGTERM): the request
timeout still holds, within the margin wrapper.handlers.chat states, and a timeout before
any output is a 504 even when streaming (the keep-alive never commits a 200 past the
deadline). Not a benchmark: the bound is generous, a correctness check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import CHAT, envelope_error, settled

# Reads stdin to its end and then sleeps, ignoring SIGTERM: only SIGKILL ends it.
WEDGED = """#!/bin/sh
trap '' TERM
cat > /dev/null
exec sleep 60
"""
TIMEOUT = 2.0
# 1.5 s of closing (interrupt, then SIGTERM after 1 s, SIGKILL 0.5 s later) and room for a
# busy machine; without the bound a wedged CLI held the answer 5 to 10 s past the timeout.
MARGIN = 3.0


def wedged_processes(script: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if str(script).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("stream", [False, True])
async def test_a_wedged_cli_times_out_on_time_with_its_status(
    start_server: Any, tmp_path: Path, stream: bool
) -> None:
    cli = tmp_path / "wedged-claude"
    cli.write_text(WEDGED)
    os.chmod(cli, 0o700)
    # A keep-alive due just after the deadline, while the CLI is being closed: it must not
    # start the response (that was a 200 and an error frame instead of a 504).
    server = await start_server(
        cli_path=str(cli), timeout=TIMEOUT, keepalive_interval=TIMEOUT + 0.5, sandbox="off"
    )
    async with server.http() as http:
        started = trio.current_time()
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        elapsed = trio.current_time() - started
    assert response.status_code == 504, response.text
    assert envelope_error(response.json())["code"] == "timeout"
    assert TIMEOUT <= elapsed < TIMEOUT + MARGIN
    # The launcher's watcher takes the CLI down once the launcher is killed.
    assert await settled(lambda: wedged_processes(cli), within=3) == []
