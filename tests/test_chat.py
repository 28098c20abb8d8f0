"""Chat completions through the real server, the real Claude Code CLI and the mock API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import MODEL, Server, settled, transcripts
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.places import UnsafeDirectory


async def test_non_streaming_answer(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("Paris is the capital.", input_tokens=20, output_tokens=5))
    with trio.fail_after(30):
        response = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
        )
    completion = response.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris is the capital."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (20, 5)
    assert completion.usage.total_tokens == 25
    cost = completion.model_extra["cost_usd"]  # type: ignore[index]
    assert cost > 0
    assert float(response.headers["x-claude-cost-usd"]) == pytest.approx(cost, abs=1e-6)
    assert mock.messages[0].last_user_text.endswith("Capital of France?")
    assert mock.messages[0].body["model"] == MODEL


async def test_runs_leave_nothing_behind(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    # The CLI writes a transcript of every run (the whole conversation) in its config dir:
    # the run's own place, never the server's HOME. Continuation off: with it, an answered
    # conversation keeps its place and transcript until SESSION_TTL, by design
    # (test_sessions); off is the promise that no stateless run keeps anything.
    server: Server = await start_server(session_auto_continue=False)
    mock.script(Reply.text("ok"), Reply.error(529, "overloaded_error"))
    async with server.client() as client:
        with trio.fail_after(30):
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "a"}]
            )
            with pytest.raises(openai.APIStatusError):
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "b"}]
                )
    assert not (tmp_path / "home" / ".claude").exists()
    assert await settled(lambda: transcripts(tmp_path)) == []
    assert list(server.config.workdir.iterdir()) == []


async def test_an_unusable_workdir_stops_the_start(start_server: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UnsafeDirectory, match="file/runs"):
        await start_server(workdir=blocker / "runs")


async def test_a_workdir_lost_while_serving_is_a_clear_error(
    server: Server, http: httpx.AsyncClient
) -> None:
    shutil.rmtree(server.config.workdir)
    server.config.workdir.write_text("not a directory any more")
    with trio.fail_after(30):
        response = await http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "workdir_unavailable"


async def test_prompts_and_history_reach_claude(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    messages = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Ahoy, Ada!"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in one line."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    with trio.fail_after(30):
        await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    sent = mock.messages[0]
    system = sent.system_text
    assert "You are a pirate." in system
    assert system.index("You are a pirate.") < system.index("Answer in one line.")
    prompt = sent.last_user_text
    assert (
        prompt.index("My name is Ada.")
        < prompt.index("Ahoy, Ada!")
        < prompt.index("What is my name?")
    )
    assert "You are a pirate." not in sent.all_text
    # Claude Code's tools are off unless asked for.
    assert sent.body.get("tools", []) == []


async def test_default_model_when_none_given(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(default_model="claude-haiku-4-5")
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
    assert response.status_code == 200
    assert response.json()["model"] == "claude-haiku-4-5"
    assert mock.messages[0].body["model"] == "claude-haiku-4-5"


async def test_cached_tokens(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("ok", input_tokens=4, cache_read_tokens=96))
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "long story"}]
        )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 100
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 96


async def test_claude_code_continues_past_upstream_max_tokens(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    # Claude Code itself resumes an answer the API cut at max_tokens; the client sees one
    # whole answer. ("length" is reported only when the CLI itself stops there.)
    mock.script(Reply.text("first half, ", stop_reason="max_tokens"), Reply.text("second half."))
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "long story"}]
        )
    assert len(mock.messages) == 2
    assert completion.choices[0].message.content == "first half, second half."
    assert completion.choices[0].finish_reason == "stop"


async def _collect_stream(stream: Any) -> list[tuple[float, Any]]:
    return [(trio.current_time(), chunk) async for chunk in stream]


async def test_streaming_token_by_token(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("one two three four five", pieces=5, delay=0.15))
    with trio.fail_after(30):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True
        )
        chunks = await _collect_stream(stream)
    first, *middle, last = [chunk for _, chunk in chunks]
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    texts = [c.choices[0].delta.content for c in middle]
    assert len(texts) == 5
    assert "".join(texts) == "one two three four five"
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert last.model_extra["cost_usd"] > 0  # type: ignore[index]
    assert {c.id for _, c in chunks} == {first.id}
    assert {c.created for _, c in chunks} == {first.created}
    assert all(c.usage is None for _, c in chunks)
    # Content arrives over time, as the mock sends it, not in one burst at the end.
    arrivals = [t for t, c in chunks[1:6]]
    assert arrivals[-1] - arrivals[0] >= 0.4


async def test_streaming_include_usage(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("abc", input_tokens=30, output_tokens=3))
    with trio.fail_after(30):
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk for _, chunk in await _collect_stream(stream)]
    *content, final, usage_chunk = chunks
    assert all(c.usage is None for c in [*content, final])
    assert final.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (30, 3)
    assert usage_chunk.usage.total_tokens == 33


async def test_stream_helper_accumulates(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.text("The quick brown fox.", pieces=4))
    with trio.fail_after(30):
        async with client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": "fox"}]
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
    assert final.choices[0].message.content == "The quick brown fox."
    assert final.choices[0].finish_reason == "stop"


async def test_streaming_wire_format(http: httpx.AsyncClient, mock: MockAnthropic) -> None:
    mock.script(Reply.text("hey"))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with trio.fail_after(30):
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            raw = (await response.aread()).decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    frames = [f for f in raw.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    first = json.loads(frames[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    final = json.loads(frames[-2].removeprefix("data: "))
    assert final["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }


async def test_keepalive_comments_during_silence(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(keepalive_interval=0.2)
    mock.script(Reply.text("slow answer", pieces=2, delay=0.9))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with server.http() as http:
        with trio.fail_after(30):
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                raw = (await response.aread()).decode()
    assert raw.count(": keep-alive\n\n") >= 2
    assert raw.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("upstream", "status", "kind"), [(529, 503, "server_error"), (429, 429, "rate_limit_error")]
)
async def test_a_slow_upstream_error_before_claude_answers_keeps_its_status(
    start_server: Any, mock: MockAnthropic, upstream: int, status: int, kind: str
) -> None:
    # The API fails after several keep-alive intervals (as after its own retries): no
    # keep-alive went out before Claude began to answer, so the status is the error's.
    server = await start_server(keepalive_interval=0.2)
    mock.script(Reply.error(upstream, "overloaded_error", wait=1.0))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert ": keep-alive" not in response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == kind


async def test_a_system_prompt_past_the_argument_limit_reaches_claude(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # Linux caps one command-line argument at 128 KiB; the prompt goes by a file instead.
    system = "Be brief. " * 30_000  # 300 KB
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]}
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert system.strip() in mock.messages[0].system_text
