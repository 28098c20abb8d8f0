"""OpenAI function calling through the real server, the real Claude Code CLI and the mock.

The mock plays Claude: it answers with ``tool_use`` blocks (streamed as ``input_json_delta``
fragments, ``stop_reason: tool_use``) and records every request, so each test can check
both what the client got and what Claude was shown: the client's functions as tools
under their own names, and, on the follow-up, real ``tool_use`` / ``tool_result`` blocks
whose ids match. Every run must end with no CLI process and no transcript left behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openai import AsyncOpenAI

from tests.conftest import (
    MODEL,
    WEATHER,
    WEATHER_SCHEMA,
    Server,
    cli_processes,
    left_behind,
    sse_data,
    stream_raw,
)
from tests.mock_anthropic import MockAnthropic, Recorded, Reply, ToolUse

TIME = {
    "type": "function",
    "function": {"name": "get-time", "description": "The time in a time zone."},
}
ASK = {"role": "user", "content": "Weather in Paris?"}
PARIS = ToolUse("get_weather", {"city": "Paris"}, id="toolu_01Paris", pieces=4)
ROME = ToolUse("get_weather", {"city": "Rome"}, id="toolu_02Rome", pieces=4)


def tool_deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [d for f in frames for d in f["choices"][0]["delta"].get("tool_calls") or []]


def blocks(record: Recorded, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return record.blocks(kind)


# --- Claude calls a client function ---------------------------------------------------


async def test_call_non_streaming(
    server: Server, client: AsyncOpenAI, mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(Reply.tool_calls(PARIS, input_tokens=30, output_tokens=12))
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[ASK],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id == "call_01Paris"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 12)
    assert completion.model_extra["cost_usd"] > 0  # type: ignore[index]
    # Claude saw the function as a tool, under the client's own name and nothing else;
    # the run stopped at the call (no second API request: nothing was executed).
    [sent] = mock.messages
    assert sent.body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER_SCHEMA,
        }
    ]
    assert await left_behind(server, tmp_path) == ([], [], [])


async def test_text_beside_the_call(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.tool_calls(PARIS, text="Let me look that up."))
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[ASK],
            tools=[WEATHER, TIME],  # type: ignore[list-item]
        )
    message = completion.choices[0].message
    assert message.content == "Let me look that up."
    assert [c.function.name for c in message.tool_calls or []] == ["get_weather"]
    # A function without parameters is offered as taking an empty object.
    tools = {t["name"]: t for t in mock.messages[0].body["tools"]}
    assert tools["get-time"]["input_schema"] == {"type": "object", "properties": {}}


async def test_call_streaming_wire_format(
    server: Server, http: httpx.AsyncClient, mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(Reply.tool_calls(PARIS, delay=0.05))
    frames = await stream_raw(http, {"model": MODEL, "messages": [ASK], "tools": [WEATHER]})
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    first, *rest = tool_deltas(frames)
    assert first == {
        "index": 0,
        "id": "call_01Paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    # The arguments arrive as the fragments Claude streamed, one delta each.
    assert len(rest) == len(PARIS.fragments) == 4
    assert all(set(d) == {"index", "function"} and d["index"] == 0 for d in rest)
    assert all(set(d["function"]) == {"arguments"} for d in rest)
    assert [d["function"]["arguments"] for d in rest] == PARIS.fragments
    final = frames[-1]["choices"][0]
    assert (final["delta"], final["finish_reason"]) == ({}, "tool_calls")
    assert {f["id"] for f in frames} == {frames[0]["id"]}
    assert await left_behind(server, tmp_path) == ([], [], [])


@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_calls(http: httpx.AsyncClient, mock: MockAnthropic, stream: bool) -> None:
    # Slow fragments: the first call is whole long before the second; both must arrive.
    mock.script(Reply.tool_calls(PARIS, ROME, text="Checking both.", delay=0.05))
    body = {"model": MODEL, "messages": [ASK], "tools": [WEATHER]}
    if stream:
        frames = await stream_raw(http, body)
        deltas = tool_deltas(frames)
        starts = [d for d in deltas if "id" in d]
        assert [(d["index"], d["id"]) for d in starts] == [(0, "call_01Paris"), (1, "call_02Rome")]
        arguments = ["", ""]
        for delta in deltas:
            arguments[delta["index"]] += delta["function"]["arguments"]
        assert [json.loads(a) for a in arguments] == [{"city": "Paris"}, {"city": "Rome"}]
        assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=body)
        message = response.json()["choices"][0]["message"]
        assert message["content"] == "Checking both."
        calls = [(c["id"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]]
        assert calls == [("call_01Paris", {"city": "Paris"}), ("call_02Rome", {"city": "Rome"})]
    assert len(mock.messages) == 1


async def test_stream_helper_accumulates_calls(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    mock.script(Reply.tool_calls(PARIS, ROME))
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    with trio.fail_after(30):
        async with client.chat.completions.stream(
            model=MODEL,
            messages=[ASK],
            tools=[strict],  # type: ignore[list-item]
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("call_01Paris", "get_weather"),
        ("call_02Rome", "get_weather"),
    ]
    assert [c.function.parsed_arguments for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_false_reports_one_call(
    http: httpx.AsyncClient, mock: MockAnthropic, stream: bool
) -> None:
    mock.script(Reply.tool_calls(PARIS, ROME))
    body = {"model": MODEL, "messages": [ASK], "tools": [WEATHER], "parallel_tool_calls": False}
    if stream:
        ids = [d["id"] for d in tool_deltas(await stream_raw(http, body)) if "id" in d]
    else:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=body)
        ids = [c["id"] for c in response.json()["choices"][0]["message"]["tool_calls"]]
    assert ids == ["call_01Paris"]
    assert "Call at most one function per reply." in mock.messages[0].system_text


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_from_the_non_streaming_retry(
    http: httpx.AsyncClient, mock: MockAnthropic, stream: bool
) -> None:
    # The stream breaks before any delta; Claude Code asks again without streaming and
    # gets the calls whole. They still reach the client, streamed whole if need be.
    mock.script(Reply.tool_calls(PARIS, ROME, fail_after=0), Reply.tool_calls(PARIS, ROME))
    body = {"model": MODEL, "messages": [ASK], "tools": [WEATHER]}
    if stream:
        frames = await stream_raw(http, body)
        deltas = tool_deltas(frames)
        assert [(d["index"], d.get("id")) for d in deltas] == [
            (0, "call_01Paris"),
            (0, None),
            (1, "call_02Rome"),
            (1, None),
        ]
        assert json.loads(deltas[3]["function"]["arguments"]) == {"city": "Rome"}
        assert frames[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=body)
        calls = response.json()["choices"][0]["message"]["tool_calls"]
        assert [c["id"] for c in calls] == ["call_01Paris", "call_02Rome"]
    assert [m.body["stream"] for m in mock.messages] == [True, False]


async def test_a_call_cut_mid_stream_is_an_honest_error(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    # Two argument fragments went out before the stream broke; the retry's call cannot be
    # reconciled with them, so the stream ends with an error, not a half-made call.
    mock.script(Reply.tool_calls(PARIS, fail_after=2), Reply.tool_calls(ROME))
    with trio.fail_after(30):
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [ASK], "tools": [WEATHER], "stream": True},
        ) as r:
            raw = (await r.aread()).decode()
    *frames, error = [json.loads(f) for f in sse_data(raw)]
    first, *fragments = tool_deltas(frames)[:3]
    assert (first["id"], first["function"]["arguments"]) == ("call_01Paris", "")
    assert [d["function"]["arguments"] for d in fragments] == PARIS.fragments[:2]
    assert error["error"]["code"] == "stream_restarted"
    assert "[DONE]" not in raw


async def test_client_leaving_while_a_call_is_held(
    server: Server, http: httpx.AsyncClient, mock: MockAnthropic, tmp_path: Path
) -> None:
    # The first call is whole (and held by the gate) while the second still streams for
    # seconds: a client that leaves then must stop the run, upstream stream included.
    slow = ToolUse("get_weather", {"city": "R" * 80}, id="toolu_02Slow", pieces=40)
    mock.script(Reply.tool_calls(PARIS, slow, delay=0.1))
    body = {"model": MODEL, "messages": [ASK], "tools": [WEATHER]}

    async def post() -> None:
        await http.post("/v1/chat/completions", json=body)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            await mock.request_arrived.wait()
            [upstream] = mock.messages
            # Into the second call: the first is whole, held by the gate.
            while upstream.deltas < len(PARIS.fragments) + 5:  # noqa: ASYNC110
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        gone_at = trio.current_time()
        assert await left_behind(server, tmp_path) == ([], [], [])
    assert upstream.aborted_at is not None
    assert upstream.aborted_at - gone_at < 1.0


# --- the legacy functions / function_call ---------------------------------------------

LEGACY = {"model": MODEL, "messages": [ASK], "functions": [WEATHER["function"]]}


async def test_legacy_function_call(http: httpx.AsyncClient, mock: MockAnthropic) -> None:
    mock.script(Reply.tool_calls(PARIS))
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json={**LEGACY, "function_call": "auto"})
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["content"] is None
    assert "tool_calls" not in choice["message"]
    call = choice["message"]["function_call"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert mock.messages[0].tool_names == ["get_weather"]


async def test_legacy_function_call_streaming(http: httpx.AsyncClient, mock: MockAnthropic) -> None:
    mock.script(Reply.tool_calls(PARIS))
    frames = await stream_raw(http, LEGACY)
    deltas = [f["choices"][0]["delta"] for f in frames]
    calls = [d["function_call"] for d in deltas if "function_call" in d]
    assert calls[0] == {"name": "get_weather", "arguments": ""}
    assert all(set(c) == {"arguments"} for c in calls[1:])
    assert json.loads("".join(c["arguments"] for c in calls)) == {"city": "Paris"}
    assert not any("tool_calls" in d for d in deltas)
    assert frames[-1]["choices"][0]["finish_reason"] == "function_call"


async def test_legacy_round_trip(
    server: Server, http: httpx.AsyncClient, mock: MockAnthropic, tmp_path: Path
) -> None:
    mock.script(Reply.text("It is 22 C in Paris."))
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    messages = [
        ASK,
        {"role": "assistant", "content": None, "function_call": call},
        {"role": "function", "name": "get_weather", "content": "22 C, sunny"},
    ]
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json={**LEGACY, "messages": messages})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "It is 22 C in Paris."
    [sent] = mock.messages
    [(_, use)] = blocks(sent, "tool_use")
    [(_, result)] = blocks(sent, "tool_result")
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    assert result["tool_use_id"] == use["id"]
    assert result["content"].startswith("22 C, sunny")
    assert await left_behind(server, tmp_path) == ([], [], [])


# --- the follow-up: results reach Claude as tool results -------------------------------


def follow_up(calls: list[dict[str, Any]], results: dict[str, str]) -> list[dict[str, Any]]:
    """The conversation a client sends after running the calls: what OpenAI expects."""
    return [
        ASK,
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": i, "content": text} for i, text in results.items()),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_round_trip(
    start_server: Any, mock: MockAnthropic, tmp_path: Path, stream: bool
) -> None:
    # The first answer comes from one server, the follow-up goes to another: nothing of
    # the conversation may live in a server's memory.
    first, second = await start_server(), await start_server()
    mock.script(Reply.tool_calls(PARIS, ROME), Reply.text("Paris 22 C, Rome 25 C.", pieces=3))
    async with first.client() as client:
        with trio.fail_after(30):
            completion = await client.chat.completions.create(
                model=MODEL,
                messages=[ASK],
                tools=[WEATHER],  # type: ignore[list-item]
            )
    calls = [
        c.model_dump(exclude_none=True) for c in completion.choices[0].message.tool_calls or []
    ]
    results = {calls[0]["id"]: "22 C, sunny", calls[1]["id"]: "25 C, clear"}
    body = {"model": MODEL, "messages": follow_up(calls, results), "tools": [WEATHER]}
    async with second.http() as http:
        if stream:
            frames = await stream_raw(http, body)
            text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames)
            finish = frames[-1]["choices"][0]["finish_reason"]
        else:
            with trio.fail_after(30):
                response = await http.post("/v1/chat/completions", json=body)
            text = response.json()["choices"][0]["message"]["content"]
            finish = response.json()["choices"][0]["finish_reason"]
    assert (text, finish) == ("Paris 22 C, Rome 25 C.", "stop")
    sent = mock.messages[1]
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]
    uses = blocks(sent, "tool_use")
    assert [(role, b["id"], b["input"]) for role, b in uses] == [
        ("assistant", "call_01Paris", {"city": "Paris"}),
        ("assistant", "call_02Rome", {"city": "Rome"}),
    ]
    answers = blocks(sent, "tool_result")
    assert [(role, b["tool_use_id"]) for role, b in answers] == [
        ("user", "call_01Paris"),
        ("user", "call_02Rome"),
    ]
    assert answers[0][1]["content"] == "22 C, sunny"
    # The CLI appends its environment notes to the last result.
    assert answers[1][1]["content"].startswith("25 C, clear")
    assert sent.tool_names == ["get_weather"]
    for server in (first, second):
        assert await left_behind(server, tmp_path) == ([], [], [])


async def test_round_trip_with_history_and_a_new_question(
    http: httpx.AsyncClient, mock: MockAnthropic
) -> None:
    mock.script(Reply.text("Rome is warmer."))
    call = {
        "id": "call-from-elsewhere.1",  # not an id the API takes: replaced, consistently
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! Ask me about the weather."},
        ASK,
        {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": [{"type": "text", "text": "22 C"}]},
        {"role": "user", "content": "Is Rome warmer?"},
    ]
    body = {"model": MODEL, "messages": messages, "tools": [WEATHER]}
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == "Rome is warmer."
    sent = mock.messages[0]
    roles = [m["role"] for m in sent.body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert sent.body["messages"][1]["content"][0]["text"] == "Hello! Ask me about the weather."
    [(_, use)] = blocks(sent, "tool_use")
    [(_, result)] = blocks(sent, "tool_result")
    assert use["id"].startswith("toolu_") and result["tool_use_id"] == use["id"]
    assert result["content"] == "22 C"
    last = sent.body["messages"][-1]["content"]
    assert last[0]["type"] == "tool_result"
    assert last[1] == {"type": "text", "text": "Is Rome warmer?"}
    assert "You are a weather bot." in sent.system_text


async def test_a_later_question_after_a_finished_round_trip(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    mock.script(Reply.text("Let me check Rome."))
    call = {
        "id": "call_01Paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        *follow_up([call], {"call_01Paris": "22 C"}),
        {"role": "assistant", "content": "It is 22 C in Paris."},
        {"role": "user", "content": "And in Rome?"},
    ]
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert completion.choices[0].message.content == "Let me check Rome."
    [sent] = mock.messages
    history = sent.body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant", "user"]
    assert history[3]["content"] == [{"type": "text", "text": "It is 22 C in Paris."}]
    assert sent.last_user_text.endswith("And in Rome?")
    [(_, result)] = blocks(sent, "tool_result")
    assert result["tool_use_id"] == "call_01Paris"


async def test_claude_calls_again_after_a_result(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    # A resumed conversation can end in a new call, with the functions still offered.
    mock.script(Reply.tool_calls(ROME))
    call = {
        "id": "call_01Paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=follow_up([call], {"call_01Paris": "22 C"}),  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
        )
    [again] = completion.choices[0].message.tool_calls or []
    assert (again.id, json.loads(again.function.arguments)) == ("call_02Rome", {"city": "Rome"})
    assert len(mock.messages) == 1


# --- tool_choice ------------------------------------------------------------------------


async def test_tool_choice_none_offers_nothing(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[ASK],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="none",
        )
    assert completion.choices[0].message.content == "Hello from the mock."
    assert completion.choices[0].message.tool_calls is None
    assert mock.messages[0].body.get("tools", []) == []


async def test_tool_choice_required_is_asked_for(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    # Claude Code cannot force a call through the API, so it is asked for; a text answer
    # anyway is reported as it is, never dressed up as a call.
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[ASK],
            tools=[WEATHER, TIME],  # type: ignore[list-item]
            tool_choice="required",
        )
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.message.tool_calls) == ("stop", None)
    assert choice.message.content == "Hello from the mock."
    sent = mock.messages[0]
    assert sorted(sent.tool_names) == ["get-time", "get_weather"]
    assert "You must call at least one of your functions" in sent.system_text


async def test_named_tool_choice_offers_only_that_function(
    client: AsyncOpenAI, mock: MockAnthropic
) -> None:
    mock.script(Reply.tool_calls(ToolUse("get-time", {}, id="toolu_03Time")))
    with trio.fail_after(30):
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[ASK],
            tools=[WEATHER, TIME],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get-time"}},
        )
    [call] = completion.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get-time", "{}")
    sent = mock.messages[0]
    assert sent.tool_names == ["get-time"]
    assert "You must call the function get-time in this reply." in sent.system_text


# --- Claude Code's own tools never reach the client -----------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("offered", [[], [WEATHER]])
async def test_other_tools_are_never_reported(
    http: httpx.AsyncClient, mock: MockAnthropic, stream: bool, offered: list[Any]
) -> None:
    # Claude asks for Claude Code's Bash: not a client function, not offered (tools are
    # off). Claude Code answers it with an error itself, and Claude then answers in text.
    mock.script(
        Reply.tool_calls(ToolUse("Bash", {"command": "ls"}, id="toolu_04Bash")),
        Reply.text("I cannot run commands."),
    )
    body = {"model": MODEL, "messages": [ASK], **({"tools": offered} if offered else {})}
    if stream:
        frames = await stream_raw(http, body)
        assert tool_deltas(frames) == []
        text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames)
        finish = frames[-1]["choices"][0]["finish_reason"]
    else:
        with trio.fail_after(30):
            response = await http.post("/v1/chat/completions", json=body)
        message = response.json()["choices"][0]["message"]
        assert "tool_calls" not in message
        text, finish = message["content"], response.json()["choices"][0]["finish_reason"]
    assert (text, finish) == ("I cannot run commands.", "stop")
    assert len(mock.messages) == 2
    [(_, refused)] = blocks(mock.messages[1], "tool_result")
    assert refused["tool_use_id"] == "toolu_04Bash"
    assert refused["is_error"] is True
    assert "Bash" not in mock.messages[0].tool_names


# --- bad input: 400 naming the field, before any run ----------------------------------

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
CALLS = {"role": "assistant", "content": None, "tool_calls": [CALL]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "22 C"}


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages) or [ASK], "tools": [WEATHER], **fields}


def function(**fields: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", **fields}}


def with_arguments(arguments: str) -> dict[str, Any]:
    call = {**CALL, "function": {"name": "get_weather", "arguments": arguments}}
    return {**CALLS, "tool_calls": [call]}


BAD = [
    # (case, body, param, words in the message)
    (
        "tool without a name",
        chat(tools=[{"type": "function", "function": {}}]),
        "tools[0].function.name",
        "Missing required parameter",
    ),
    (
        "tool without function",
        chat(tools=[{"type": "function"}]),
        "tools[0].function",
        "Missing required parameter",
    ),
    (
        "name with a space",
        chat(tools=[function(name="get weather")]),
        "tools[0].function.name",
        "letters, digits, underscores or dashes",
    ),
    (
        "name too long",
        chat(tools=[WEATHER, function(name="f" * 65)]),
        "tools[1].function.name",
        "1 to 64",
    ),
    (
        "name is a number",
        chat(tools=[function(name=7)]),
        "tools[0].function.name",
        "expected a string",
    ),
    (
        "parameters is an array",
        chat(tools=[function(parameters=[])]),
        "tools[0].function.parameters",
        "expected an object, got an array",
    ),
    (
        "parameters of type string",
        chat(tools=[function(parameters={"type": "string"})]),
        "tools[0].function.parameters",
        "must be 'object'",
    ),
    (
        "properties not an object",
        chat(tools=[function(parameters={"properties": []})]),
        "tools[0].function.parameters.properties",
        "expected an object",
    ),
    (
        "tool of another type",
        chat(tools=[{"type": "custom", "function": {"name": "f"}}]),
        "tools[0].type",
        "only 'function' tools",
    ),
    ("a name twice", chat(tools=[WEATHER, WEATHER]), "tools[1].function.name", "defined twice"),
    ("tools is an object", chat(tools=WEATHER), "tools", "expected an array"),
    ("tool_choice unknown word", chat(tool_choice="always"), "tool_choice", "'always' is not"),
    (
        "tool_choice names an unknown function",
        chat(tool_choice={"type": "function", "function": {"name": "nope"}}),
        "tool_choice.function.name",
        "no function named 'nope'",
    ),
    (
        "tool_choice required with no tools",
        chat(tools=None, tool_choice="required"),
        "tool_choice",
        "needs at least one function",
    ),
    (
        "tool_choice of another type",
        chat(tool_choice={"type": "x", "function": {"name": "f"}}),
        "tool_choice.type",
        "expected 'function'",
    ),
    (
        "parallel_tool_calls is a string",
        chat(parallel_tool_calls="no"),
        "parallel_tool_calls",
        "expected a boolean",
    ),
    (
        "tool message answers no call",
        chat(ASK, CALLS, {**RESULT, "tool_call_id": "call_9"}),
        "messages[2].tool_call_id",
        "'call_9' matches no unanswered call of messages[1]",
    ),
    (
        "tool message without tool_call_id",
        chat(ASK, CALLS, {"role": "tool", "content": "x"}),
        "messages[2].tool_call_id",
        "Missing required parameter",
    ),
    (
        "tool message answers twice",
        chat(ASK, CALLS, RESULT, RESULT),
        "messages[3].tool_call_id",
        "matches no unanswered call",
    ),
    (
        "tool message after no calls",
        chat(ASK, RESULT),
        "messages[1].role",
        "must follow an assistant message that calls functions",
    ),
    (
        "tool message after a user message",
        chat(ASK, CALLS, RESULT, ASK, RESULT),
        "messages[4].role",
        "must follow an assistant message",
    ),
    (
        "a call left unanswered",
        chat(ASK, CALLS, ASK),
        "messages[1].tool_calls",
        "no tool message answers the call(s) 'call_1'",
    ),
    (
        "arguments not JSON",
        chat(ASK, with_arguments("{city: Paris}"), RESULT),
        "messages[1].tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    (
        "arguments not an object",
        chat(ASK, with_arguments("[1]"), RESULT),
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object",
    ),
    (
        "a call id twice",
        chat(ASK, {**CALLS, "tool_calls": [CALL, CALL]}, RESULT),
        "messages[1].tool_calls[1].id",
        "used twice",
    ),
    ("tools and functions", chat(functions=[WEATHER["function"]]), "functions", "not both"),
    (
        "function_call names an unknown function",
        chat(tools=None, functions=[WEATHER["function"]], function_call={"name": "nope"}),
        "function_call.name",
        "no function named 'nope'",
    ),
    (
        "function message for another function",
        chat(
            ASK,
            {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
            {"role": "function", "name": "other", "content": "x"},
            tools=None,
        ),
        "messages[2].name",
        "no open call of 'other'",
    ),
    (
        "last message from the assistant",
        chat(ASK, CALLS),
        "messages[1].role",
        "must have role 'user'",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "words"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
async def test_bad_input(
    http: httpx.AsyncClient, mock: MockAnthropic, body: Any, param: str, words: str
) -> None:
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert f"'{param}'" in error["message"]
    assert words in error["message"]
    assert mock.messages == []
    assert cli_processes() == []


async def test_bad_input_through_openai(client: AsyncOpenAI, mock: MockAnthropic) -> None:
    import openai

    with trio.fail_after(30), pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL,
            messages=[ASK, CALLS, {**RESULT, "tool_call_id": "call_2"}],  # type: ignore[list-item]
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert caught.value.param == "messages[2].tool_call_id"
    assert mock.messages == []
