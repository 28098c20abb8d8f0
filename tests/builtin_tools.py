"""What the tests of Claude Code's own tools share (test_claude_tools, test_gate,
test_confinement): the question that sends Claude looking around its place, and a secret
planted outside it, where no tool may reach.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import MODEL, Server

ASK = {"role": "user", "content": "Where are you working?"}
# A login token's shape, so that a leak of it reads as one.
SECRET = "sk-ant-oat01-planted-login-token"


async def ask_where(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    """``ASK``, as a chat completion with ``body``'s fields."""
    with trio.fail_after(30):
        return await http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": [ASK], **body}
        )


def plant(server: Server, tmp_path: Path) -> None:
    """A login in the server's HOME, and another client's transcript in the workdir."""
    login = tmp_path / "home" / ".claude"
    login.mkdir(parents=True, exist_ok=True)
    (login / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {"accessToken": SECRET}}))
    other = server.config.workdir / "sessions" / "other" / "claude" / "projects" / "p"
    other.mkdir(parents=True)
    (other / "s.jsonl").write_text(json.dumps({"message": SECRET}) + "\n")
