"""Claude Code's own tools through the real server, the real CLI and the mock.

The mock plays Claude asking for built-in tools (``Bash``, ``Write``...); the real CLI runs
them, under the server's policy and the run's gate, and sends their results back, which
the mock records. So each test checks what really ran, where, and what Claude was
offered, as well as what the client saw: the assistant's text, never a built-in tool call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builtin_tools import ASK, ask_where
from tests.conftest import MODEL, WEATHER, Server, left_behind, stream_raw
from tests.mock_anthropic import MockAnthropic, Reply, ToolUse
from wrapper.builtin import DEFAULT_ALLOWED, KNOWN

WHERE = ToolUse("Bash", {"command": "echo hi > note.txt; pwd; ls", "description": "where"})


def where_script(mock: MockAnthropic) -> None:
    mock.script(
        Reply.tool_calls(WHERE, text="Let me look."),
        Reply.text(" All done.", pieces=2),
    )


def check_ran_in_scratch_dir(mock: MockAnthropic, server: Server) -> None:
    first, second = mock.messages[:2]
    assert "Bash" in first.tool_names
    output, is_error = second.tool_result(WHERE.id)
    cwd, listing = output.splitlines()[0], output.splitlines()[1:]
    assert not is_error
    place = Path(cwd).parent  # wrapper.places: <workdir>/run-*/work
    assert (place.parent, Path(cwd).name) == (server.config.workdir.resolve(), "work")
    assert place.name.startswith("run-")
    assert cwd != os.getcwd()
    assert listing[0] == "note.txt"  # the CLI may append a <system-reminder>


async def test_a_tool_runs_in_the_runs_own_directory(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    server = await start_server(tools_allowed=("Read", "Bash"))
    where_script(mock)
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "Let me look. All done."
    assert "tool_calls" not in message
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    check_ran_in_scratch_dir(mock, server)
    assert await left_behind(server, tmp_path) == ([], [], [])


async def test_streamed_tool_activity_is_only_text(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    server = await start_server(tools_allowed=("Bash",))
    where_script(mock)
    async with server.http() as http:
        frames = await stream_raw(http, {"model": MODEL, "messages": [ASK], "enable_tools": True})
    deltas = [f["choices"][0]["delta"] for f in frames if f["choices"]]
    assert all("tool_calls" not in d for d in deltas)
    assert "".join(d.get("content") or "" for d in deltas) == "Let me look. All done."
    assert frames[-1]["choices"][0]["finish_reason"] == "stop"
    check_ran_in_scratch_dir(mock, server)
    assert await left_behind(server, tmp_path) == ([], [], [])


async def test_tools_are_off_by_default(
    server: Server, http: httpx.AsyncClient, mock: MockAnthropic, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    bash = ToolUse("Bash", {"command": f"touch {marker}", "description": "x"})
    mock.script(Reply.tool_calls(bash), Reply.text("No tools here."))
    r = await ask_where(http)
    assert r.status_code == 200, r.text
    assert not set(mock.messages[0].tool_names) & set(KNOWN)
    assert not marker.exists()
    assert "tool_calls" not in r.json()["choices"][0]["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"enable_tools": True, "allowed_tools": ["Read", "Bash"]}, "allowed_tools"),
        ({"enable_tools": True, "allowed_tools": ["NoSuchTool"]}, "allowed_tools"),
        ({"allowed_tools": ["Read"]}, "allowed_tools"),
        ({"enable_tools": True, "allowed_tools": "Read"}, "allowed_tools"),
        ({"enable_tools": True, "disallowed_tools": [1]}, "disallowed_tools[0]"),
    ],
)
async def test_a_request_cannot_widen_the_policy(
    http: httpx.AsyncClient, mock: MockAnthropic, extra: dict[str, Any], param: str
) -> None:
    r = await ask_where(http, **extra)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert mock.messages == []


@pytest.mark.parametrize(
    ("extra", "offered"),
    [
        ({}, set(DEFAULT_ALLOWED)),
        ({"disallowed_tools": ["Write", "Edit"]}, set(DEFAULT_ALLOWED) - {"Write", "Edit"}),
        ({"allowed_tools": ["Read", "Grep"]}, {"Read", "Grep"}),
        ({"allowed_tools": ["Read", "Grep"], "disallowed_tools": ["Grep", "Bash"]}, {"Read"}),
    ],
)
async def test_a_request_narrows_the_policy(
    http: httpx.AsyncClient, mock: MockAnthropic, extra: dict[str, Any], offered: set[str]
) -> None:
    r = await ask_where(http, enable_tools=True, **extra)
    assert r.status_code == 200, r.text
    assert set(mock.messages[0].tool_names) & set(KNOWN) == offered


async def test_file_tools_stay_in_the_runs_directory(
    http: httpx.AsyncClient, mock: MockAnthropic, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    write = ToolUse("Write", {"file_path": str(outside), "content": "x"}, id="toolu_out")
    mock.script(Reply.tool_calls(write), Reply.text("Could not."))
    r = await ask_where(http, enable_tools=True)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Could not."
    assert not outside.exists()
    output, is_error = mock.messages[1].tool_result("toolu_out")
    assert is_error
    assert "inside the current working directory" in output


async def test_client_functions_still_stop_the_run(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    server = await start_server(tools_allowed=("Bash",))
    paris = ToolUse("get_weather", {"city": "Paris"}, id="toolu_paris")
    mock.script(Reply.tool_calls(WHERE), Reply.tool_calls(paris, text="Now the weather."))
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True, tools=[WEATHER])
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]
    assert {"Bash", "get_weather"} <= set(mock.messages[0].tool_names)
    check_ran_in_scratch_dir(mock, server)
    assert await left_behind(server, tmp_path) == ([], [], [])


@pytest.mark.parametrize(("sandbox", "outside"), [("bwrap", "sandbox"), ("off", "none")])
async def test_tools_listing(start_server: Any, sandbox: str, outside: str) -> None:
    server = await start_server(tools_allowed=("Read", "Bash"), sandbox=sandbox)
    async with server.http() as http:
        r = await http.get("/v1/tools")
    assert r.status_code == 200
    body = r.json()
    assert (body["object"], body["sandbox"]) == ("list", sandbox == "bwrap")
    assert [t["name"] for t in body["data"]] == list(KNOWN)
    assert {t["name"] for t in body["data"] if t["allowed"]} == {"Read", "Bash"}
    assert all(
        set(t) == {"object", "name", "description", "allowed", "confined"} for t in body["data"]
    )
    assert all(t["description"] for t in body["data"])
    confined = {t["name"]: t["confined"] for t in body["data"]}
    assert confined["Read"] == confined["Grep"] == "directory"
    assert confined["Bash"] == confined["WebFetch"] == outside
