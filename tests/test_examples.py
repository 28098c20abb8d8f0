"""examples/: each one run as a user would run it, against a real server and the mock.

The server requires an API key, so each example also proves it sends OPENAI_API_KEY. The
mock gives scripted answers; the tests check what the example printed and what Claude
was sent, so an example that stops working (or stops showing what it claims) fails here.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import Server, required_tool
from tests.mock_anthropic import MockAnthropic, Reply, ToolUse

EXAMPLES = Path(__file__).parent.parent / "examples"
KEY = "example-key"


@pytest.fixture
async def keyed(start_server: Callable[..., Any]) -> Server:
    server: Server = await start_server(api_keys=(KEY,))
    return server


async def run(server: Server, *command: str) -> str:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
    with trio.fail_after(60):
        result = await trio.run_process(
            command, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def example(server: Server, name: str) -> list[str]:
    return (await run(server, sys.executable, str(EXAMPLES / name))).splitlines()


async def test_basic(keyed: Server, mock: MockAnthropic) -> None:
    mock.script(Reply.text("2, 3 and 5.", input_tokens=20, output_tokens=6))
    answer, tokens, cost = await example(keyed, "basic.py")
    assert answer == "2, 3 and 5."
    assert tokens == "tokens: 20 in, 6 out"
    assert re.fullmatch(r"cost: \$\d+\.\d{6}", cost)
    [sent] = mock.messages
    assert "You are terse." in sent.system_text
    assert sent.last_user_text.endswith("Name three prime numbers.")


async def test_streaming(keyed: Server, mock: MockAnthropic) -> None:
    mock.script(Reply.text("1, 2, 3, 4, 5.", pieces=5, input_tokens=9, output_tokens=5))
    assert await example(keyed, "streaming.py") == ["1, 2, 3, 4, 5.", "tokens: 9 in, 5 out"]
    assert mock.messages[0].last_user_text.endswith("Count to five.")


async def test_function_calling(keyed: Server, mock: MockAnthropic) -> None:
    mock.script(
        Reply.tool_calls(ToolUse("get_weather", {"city": "Paris"}, id="toolu_01Paris")),
        Reply.text("It is 21 C and clear in Paris."),
    )
    assert await example(keyed, "function_calling.py") == [
        "call: get_weather({'city': 'Paris'})",
        "answer: It is 21 C and clear in Paris.",
    ]
    ask, follow_up = mock.messages
    assert ask.tool_names == ["get_weather"]
    # The example's function ran and its result reached Claude, answering Claude's call.
    [(_, call)] = follow_up.blocks("tool_use")
    [(_, result)] = follow_up.blocks("tool_result")
    assert result["tool_use_id"] == call["id"]
    # The CLI appends its environment notes to the last result.
    reported = json.loads(result["content"].split("\n", 1)[0])
    assert reported == {"city": "Paris", "temperature_c": 21, "sky": "clear"}


async def test_sessions(keyed: Server, mock: MockAnthropic) -> None:
    mock.script(Reply.text("Nice to meet you, Ada."), Reply.text("Your name is Ada."))
    assert await example(keyed, "sessions.py") == [
        "> My name is Ada. Please remember it.",
        "Nice to meet you, Ada.",
        "> What is my name?",
        "Your name is Ada.",
    ]
    # The client sent only the new question; the server gave Claude the first turn too.
    _, second = mock.messages
    assert second.last_user_text.endswith("What is my name?")
    assert "My name is Ada." in second.all_text
    assert "Nice to meet you, Ada." in second.all_text


async def test_curl(keyed: Server, mock: MockAnthropic) -> None:
    required_tool("curl")
    output = await run(keyed, "sh", str(EXAMPLES / "curl.sh"))
    sections = dict(
        (title.strip(), body.strip())
        for title, body in re.findall(r"(?m)^== (.*)\n((?:(?!== ).*\n?)*)", output)
    )
    assert list(sections) == [
        "GET /health (no key needed)",
        "GET /v1/models",
        "POST /v1/chat/completions",
        "POST /v1/chat/completions, streamed",
    ]
    assert json.loads(sections["GET /health (no key needed)"])["status"] == "healthy"
    models = json.loads(sections["GET /v1/models"])
    assert "claude-sonnet-4-5" in [m["id"] for m in models["data"]]
    completion = json.loads(sections["POST /v1/chat/completions"])
    assert completion["choices"][0]["message"]["content"] == "Hello from the mock."
    frames = [
        line.removeprefix("data: ")
        for line in sections["POST /v1/chat/completions, streamed"].splitlines()
        if line.startswith("data: ")
    ]
    assert frames[-1] == "[DONE]"
    text = "".join(json.loads(f)["choices"][0]["delta"].get("content") or "" for f in frames[:-1])
    assert text == "Hello from the mock."
    assert [m.last_user_text.endswith("Say hello.") for m in mock.messages] == [True, True]
