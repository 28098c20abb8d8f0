"""Request parsing: caps and nesting limits through the real server, and no body, however
large, holds the event loop while it is parsed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import Server
from tests.mock_anthropic import MockAnthropic
from wrapper.schema import MAX_JSON_VALUES, MAX_MESSAGES, MAX_PARTS, MAX_TOOLS, json_values
from wrapper.strict import MAX_DEPTH

CHAT = "/v1/chat/completions"


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def schema(depth: int) -> dict[str, Any]:
    """An object schema in which exactly ``depth`` objects and arrays nest."""
    inner: dict[str, Any] = {"type": "string"}
    levels = 1
    if depth % 2 == 0:
        inner, levels = {"type": "array", "items": inner}, 2
    while levels < depth:  # each property adds the property's object and `properties`
        inner, levels = {"type": "object", "properties": {"p": inner}}, levels + 2
    return inner


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def worst_body(limit: int) -> bytes:
    """The costliest body to parse that every limit lets through: ``MAX_TOOLS`` tools with
    wide schemas (one as deep as allowed), then ``MAX_MESSAGES`` messages filled with the
    smallest content parts (the most objects per byte), up to ``limit`` bytes and
    ``MAX_JSON_VALUES`` values. The last message is whitespace, so the server parses all
    of it and then refuses it (400): the parse is what is measured, not a run."""
    wide = {"type": "object", "properties": {f"p{j}": {"type": "string"} for j in range(200)}}
    tools = [
        {"type": "function", "function": {"name": f"f{i}", "parameters": wide}}
        for i in range(MAX_TOOLS - 1)
    ]
    tools.append(
        {"type": "function", "function": {"name": "deep", "parameters": schema(MAX_DEPTH)}}
    )
    part = compact({"type": "text", "text": "x"})
    last = {"role": "user", "content": " "}
    head = compact({"messages": [last], "tools": tools})
    count = MAX_MESSAGES - 1
    by_bytes = (limit - len(head) - 40 * count) // (len(part) + 1) // count
    by_values = (
        (MAX_JSON_VALUES - json_values(head) - 4 * count) // (json_values(part) + 1) // count
    )
    parts = min(MAX_PARTS, by_bytes, by_values)
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": [json.loads(part)] * parts}
        for i in range(count)
    ]
    body = compact({"messages": [*messages, last], "tools": tools})
    assert len(body) <= limit
    assert MAX_JSON_VALUES - 10_000 < json_values(body) <= MAX_JSON_VALUES
    return body


async def test_health_answers_while_the_worst_bodies_are_parsed(
    start_server: Any, mock: MockAnthropic
) -> None:
    server: Server = await start_server(rate_limit_enabled=False)
    body = worst_body(server.config.max_body_bytes)
    answers: list[int] = []
    healthy: list[float] = []
    done = trio.Event()

    async def big(http: httpx.AsyncClient) -> None:
        response = await http.post(CHAT, content=body, headers={"content-type": "application/json"})
        answers.append(response.status_code)
        assert response.json()["error"]["param"] == f"messages[{MAX_MESSAGES - 1}].content"

    async with server.http() as http, server.http() as probe, trio.open_nursery() as nursery:

        async def bigs() -> None:
            async with trio.open_nursery() as inner:
                for _ in range(3):
                    inner.start_soon(big, http)
            done.set()

        nursery.start_soon(bigs)
        # /health throughout the parsing: on the event loop, each parse would hold every
        # one of these for its whole duration (over a second for each body).
        while not done.is_set():
            started = trio.current_time()
            with trio.fail_after(1):
                assert (await probe.get("/health")).status_code == 200
            healthy.append(trio.current_time() - started)
            await trio.sleep(0.02)
    assert answers == [400, 400, 400]
    assert len(healthy) >= 3  # the probes ran during the parsing, not after it
    assert mock.messages == []


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}] * 40_000}, "tools", None),
        ({"messages": [{"role": "user", "content": "x"}] * 240_000}, "messages", None),
        ({"model": "m" * 200_000}, "model", "string_above_max_length"),
        ({"stop": ["s"] * 5}, "stop", "array_above_max_length"),
        ({"presence_penalty": {}}, "presence_penalty", None),
        ({"seed": {}}, "seed", None),
        ({"audio": []}, "audio", None),
        ({"logit_bias": []}, "logit_bias", None),
        ({"metadata": []}, "metadata", None),
        ({"temperature": 3}, "temperature", None),
        ({"messages": [{"role": "user", "content": " \n "}]}, "messages[0].content", None),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": schema(MAX_DEPTH + 1)},
                    }
                ]
            },
            "tools[0].function.parameters",
            None,
        ),
    ],
)
async def test_refused_with_the_field_named(
    http: httpx.AsyncClient,
    mock: MockAnthropic,
    fields: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    with trio.fail_after(10):
        response = await http.post(CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert f"'{param}'" in error["message"]
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code
    assert mock.messages == []


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b"[" * 1_000 + b"]" * 1_000, b'{"messages": ' + b"[" * 5_000],
)
async def test_deep_json_is_invalid_json_not_a_500(http: httpx.AsyncClient, raw: bytes) -> None:
    response = await http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "too deeply" in error["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("unit", [b"[],", b"0,", b"{},"])
async def test_a_body_of_too_many_values_is_refused_before_decoding(
    http: httpx.AsyncClient, mock: MockAnthropic, unit: bytes
) -> None:
    """Decoding holds the GIL, even in a worker thread: 10 MiB of `[],` in a field the
    server ignores would hold the event loop ~2 s."""
    filler = unit * ((MAX_JSON_VALUES + 1) // json_values(unit) + 1)
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "x": [' + filler + b"0]}"
    response = await http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_values"
    assert mock.messages == []


async def test_an_integer_past_pythons_digit_limit_is_invalid_json(http: httpx.AsyncClient) -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"1" * 5000 + b"}"
    response = await http.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_deep_call_arguments_are_refused_not_a_500(http: httpx.AsyncClient) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[" * 5000}}
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    response = await http.post(CHAT, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


async def test_a_schema_at_the_depth_limit_reaches_claude(
    client: Any, mock: MockAnthropic, server: Server
) -> None:
    """The deepest schema the server takes goes through the SDK and the CLI unharmed."""
    tool = {"type": "function", "function": {"name": "f", "parameters": schema(MAX_DEPTH)}}
    with trio.fail_after(60):
        answer = await client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "hi"}], tools=[tool]
        )
    assert answer.choices[0].message.content
    sent = next(t for t in mock.messages[-1].body["tools"] if t["name"] == "f")
    assert depth_of(sent["input_schema"]) == MAX_DEPTH


def test_schema_helper() -> None:
    assert [depth_of(schema(d)) for d in (3, 4, MAX_DEPTH, MAX_DEPTH + 1)] == [
        3,
        4,
        MAX_DEPTH,
        MAX_DEPTH + 1,
    ]


async def test_a_client_gone_mid_parse_frees_the_parser(start_server: Any) -> None:
    """A client that leaves while its body is parsed in the worker thread: the request
    unwinds once the parse ends, and the next large body is parsed as usual."""
    server: Server = await start_server(rate_limit_enabled=False)
    body = worst_body(server.config.max_body_bytes)
    headers = {"content-type": "application/json"}
    async with server.http() as http:
        with trio.move_on_after(0.5) as gave_up:
            await http.post(CHAT, content=body, headers=headers)
        assert gave_up.cancelled_caught
        with trio.fail_after(30):
            response = await http.post(CHAT, content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == f"messages[{MAX_MESSAGES - 1}].content"
