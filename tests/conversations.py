"""The conversation the session tests hold (test_sessions, test_tenants, test_recovery):
Ada gives her name, then asks for it back. Its bodies, the calls that send them, and the
check that Claude received the first turn as real messages.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.conftest import MODEL, stream_raw
from tests.mock_anthropic import Recorded

NAME = "My name is Ada."
GREETING = "Nice to meet you, Ada."
QUESTION = "What is my name?"


def chat(text: str, session: str | None = "s1", **extra: Any) -> dict[str, Any]:
    """A turn of one user message, in ``session`` (none when None)."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if session is not None:
        body["session_id"] = session
    return {**body, **extra}


async def ask(http: httpx.AsyncClient, body: dict[str, Any], **kw: Any) -> httpx.Response:
    with trio.fail_after(30):
        return await http.post("/v1/chat/completions", json=body, **kw)


async def ask_streamed(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """The text of the streamed answer to ``body``."""
    frames = await stream_raw(http, body)
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])


def holds_first_turn(sent: Recorded, question: str = QUESTION) -> bool:
    """Turn 1 arrived as real prior messages (user, then assistant), not a rendered prompt."""
    turns = sent.turns
    return (
        len(turns) >= 3
        and turns[0][0] == "user"
        and turns[0][1].endswith(NAME)
        and turns[1] == ("assistant", GREETING)
        and turns[-1][0] == "user"
        and turns[-1][1].endswith(question)
        and "<conversation_history>" not in sent.all_text
    )


def history(*texts: str) -> dict[str, Any]:
    """A stateless request resending the conversation: ``texts`` from user and assistant
    in turn, after a system prompt."""
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)]
    return {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."}, *messages]}
