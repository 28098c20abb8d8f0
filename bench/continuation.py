"""Upstream prompt bytes per turn of a 10-turn stateless conversation, with and without
automatic continuation (SESSION_AUTO_CONTINUE), through the real CLI and the mock API.

The client resends its whole history every turn, as OpenAI clients do. Per turn it
reports what the Anthropic API received: the bytes of the request's ``messages`` and of
its last user message (what this server handed Claude Code as the new prompt: the whole
rendered history without continuation, only the new question with it). Run with
``make bench``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from harness import serving

from tests.mock_anthropic import MockAnthropic, Reply

TURNS = 10
QUESTION = "Question {n}: tell me one more fact about the number {n}, please. " * 2
ANSWER = "Answer {n}: " + "here is a fact about it, in a sentence or two of text. " * 5


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


async def conversation(auto: bool) -> list[tuple[int, int]]:
    mock = MockAnthropic()
    mock.script(*(Reply.text(ANSWER.format(n=n)) for n in range(TURNS)))
    sizes: list[tuple[int, int]] = []
    async with serving(mock, session_auto_continue=auto) as url:
        messages: list[dict[str, str]] = []
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for n in range(TURNS):
                messages.append({"role": "user", "content": QUESTION.format(n=n)})
                body = {"model": "claude-sonnet-4-5", "messages": messages}
                response = await http.post("/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
                answer = response.json()["choices"][0]["message"]["content"]
                messages.append({"role": "assistant", "content": answer})
                sent = mock.messages[-1].body
                sizes.append(
                    (len(json.dumps(sent["messages"]).encode()), len(_last_user(sent).encode()))
                )
    return sizes


async def main() -> None:
    off = await conversation(auto=False)
    on = await conversation(auto=True)
    print("upstream bytes per turn: API `messages` (new prompt from this server)")
    print(f"{'turn':>4}  {'auto-continue off':>24}  {'auto-continue on':>24}")
    for n, ((m_off, p_off), (m_on, p_on)) in enumerate(zip(off, on, strict=True), 1):
        print(f"{n:>4}  {m_off:>10} ({p_off:>9})  {m_on:>10} ({p_on:>9})")
    print(
        f"{'sum':>4}  {sum(m for m, _ in off):>10} ({sum(p for _, p in off):>9})"
        f"  {sum(m for m, _ in on):>10} ({sum(p for _, p in on):>9})"
    )


if __name__ == "__main__":
    trio.run(main)
