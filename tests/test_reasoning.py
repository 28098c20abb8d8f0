"""Claude's thinking reaches the client apart from the answer: ``reasoning_content`` on the
message, or on stream deltas (the convention of DeepSeek and OpenRouter and the clients
that read them), never inside ``content``; ``SHOW_REASONING=false`` keeps it back. The real
server, the real CLI (which asks the API for thinking by default) and the mock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import MODEL
from tests.mock_anthropic import MockAnthropic, Reply

THOUGHT = ("The user asks", " for a capital;", " Paris.")
ANSWER = Reply.text("Paris is the capital.", pieces=3, thinking=THOUGHT)
ASK = [{"role": "user", "content": "Capital of France?"}]


async def test_thinking_is_reasoning_content_beside_the_answer(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    mock.script(ANSWER)
    with trio.fail_after(30):
        completion = await client.chat.completions.create(model=MODEL, messages=ASK)
    message = completion.choices[0].message
    assert message.content == "Paris is the capital."
    assert message.model_extra["reasoning_content"] == "".join(THOUGHT)  # type: ignore[index]
    assert mock.messages[0].body["thinking"]["type"] in ("enabled", "adaptive")
    # The CLI counts 0 thinking tokens for this answer: not a count, so no reasoning_tokens.
    assert completion.usage is not None and completion.usage.completion_tokens_details is None


async def test_thinking_streams_as_reasoning_deltas_before_the_text(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    mock.script(ANSWER)
    with trio.fail_after(30):
        stream = await client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        chunks = [chunk async for chunk in stream]
    first, *rest = chunks
    assert (first.choices[0].delta.role, first.choices[0].delta.content) == ("assistant", "")
    deltas = [c.choices[0].delta for c in rest]
    reasoning = [d.model_extra.get("reasoning_content") for d in deltas]  # type: ignore[union-attr]
    content = [d.content for d in deltas]
    assert [r for r in reasoning if r is not None] == list(THOUGHT)
    assert "".join(c for c in content if c) == "Paris is the capital."
    # Every piece of thinking comes before the first piece of the answer, never in it.
    last_thought = max(i for i, r in enumerate(reasoning) if r is not None)
    first_text = min(i for i, c in enumerate(content) if c)
    assert last_thought < first_text
    assert all(c is None for c, r in zip(content, reasoning, strict=True) if r is not None)


@pytest.mark.parametrize("stream", [False, True])
async def test_operators_can_keep_thinking_back(
    start_server: Any, mock: MockAnthropic, stream: bool
) -> None:
    server = await start_server(show_reasoning=False)
    mock.script(ANSWER)
    async with server.client() as client:
        with trio.fail_after(30):
            if stream:
                chunks = [
                    c
                    async for c in await client.chat.completions.create(
                        model=MODEL, messages=ASK, stream=True
                    )
                ]
                extras = [c.choices[0].delta.model_extra for c in chunks if c.choices]
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                completion = await client.chat.completions.create(model=MODEL, messages=ASK)
                extras = [completion.choices[0].message.model_extra]
                text = completion.choices[0].message.content or ""
    assert text == "Paris is the capital."
    # Claude did think (the CLI asked for it, the mock answered with it): none was sent.
    assert mock.messages[0].body["thinking"]["type"] in ("enabled", "adaptive")
    assert not any("reasoning_content" in (extra or {}) for extra in extras)
