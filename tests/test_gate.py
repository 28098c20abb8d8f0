"""The gate on Claude Code's own tools: the pure table (wrapper.builtin.refusal), then the
attacks through the real server, the real CLI and the mock playing a hostile Claude.

Each attack names something outside the run's place that a test has planted (a fake login,
another client's transcript); the CLI's tool result, as the mock receives it, must be a
refusal and must not carry the planted secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.builtin_tools import SECRET, ask_where, plant
from tests.mock_anthropic import MockAnthropic, Reply, ToolUse
from wrapper.builtin import ARGUMENTS, DEFAULT_ALLOWED, KNOWN, OUTSIDE, UNCONFINED, UNKNOWN, refusal

ROOT = Path("/srv/place")
CWD = ROOT / "work"


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("Read", {"file_path": "notes.txt"}),
        ("Read", {"file_path": str(CWD / "a" / "b.txt"), "offset": 3, "limit": 10}),
        ("Read", {"file_path": "~/work/notes.txt"}),  # ~ is the place; work/ is the cwd
        ("Read", {"file_path": "doc.pdf", "pages": "1-5"}),
        ("Write", {"file_path": "out/new.txt", "content": "~/../../etc/passwd"}),
        ("Edit", {"file_path": "a.py", "old_string": "x", "new_string": "y", "replace_all": True}),
        ("NotebookEdit", {"notebook_path": "n.ipynb", "new_source": "1", "cell_type": "code"}),
        ("Glob", {"pattern": "**/*.py"}),
        ("Glob", {"pattern": "src/*.{ts,tsx}", "path": "."}),
        ("Grep", {"pattern": "TODO", "glob": "*.{js,py}", "type": "py", "-n": True, "-C": 2}),
        ("Grep", {"pattern": "a.*b", "path": "sub", "output_mode": "content", "head_limit": 5}),
        ("Bash", {"command": "anything", "description": "unconfined by design"}),
        ("WebFetch", {"url": "https://example.com", "prompt": "x"}),
    ],
)
def test_the_gate_lets_inside_calls_run(tool: str, arguments: dict[str, Any]) -> None:
    assert refusal(tool, arguments, CWD, ROOT) is None


@pytest.mark.parametrize(
    ("tool", "arguments", "why"),
    [
        # Home in every form: the place's HOME is outside the cwd; another user's is too.
        ("Grep", {"pattern": "token", "path": "~"}, OUTSIDE),
        ("Grep", {"pattern": "token", "path": "~/"}, OUTSIDE),
        ("Read", {"file_path": "~/claude/.credentials.json"}, OUTSIDE),
        ("Read", {"file_path": "~root/.claude/.credentials.json"}, OUTSIDE),
        ("Read", {"file_path": "$HOME/.claude/.credentials.json"}, OUTSIDE),
        ("Read", {"file_path": "/etc/passwd"}, OUTSIDE),
        ("Read", {"file_path": "../claude/projects/x.jsonl"}, OUTSIDE),
        ("Read", {"file_path": "a/../../../etc/passwd"}, OUTSIDE),
        ("Write", {"file_path": "/tmp/x", "content": "x"}, OUTSIDE),
        ("Edit", {"file_path": "~", "old_string": "a", "new_string": "b"}, OUTSIDE),
        ("NotebookEdit", {"notebook_path": "/n.ipynb", "new_source": "1"}, OUTSIDE),
        # Patterns that name a place themselves.
        ("Glob", {"pattern": "/etc/*"}, OUTSIDE),
        ("Glob", {"pattern": "~/**"}, OUTSIDE),
        ("Glob", {"pattern": "../**/*.jsonl"}, OUTSIDE),
        ("Glob", {"pattern": "**/../../*"}, OUTSIDE),
        ("Glob", {"pattern": "{x,/etc/*}"}, OUTSIDE),
        ("Glob", {"pattern": "{a,{b,~/*}}"}, OUTSIDE),
        ("Glob", {"pattern": "\\/etc/*"}, OUTSIDE),
        ("Glob", {"pattern": "*", "path": "/"}, OUTSIDE),
        ("Grep", {"pattern": "x", "glob": "/root/**"}, OUTSIDE),
        ("Grep", {"pattern": "x", "glob": "../*"}, OUTSIDE),
        ("Glob", {"pattern": "{" + ",".join("abcdefghijklmnopq") + "}" * 1 + "{1,2}" * 5}, OUTSIDE),
        # Values that are not what their argument takes.
        ("Grep", {"pattern": "--pre=sh", "path": "."}, UNKNOWN),  # an option for ripgrep
        ("Grep", {"pattern": "x", "type": "../py"}, UNKNOWN),
        ("Read", {"file_path": "notes.txt", "offset": "3"}, UNKNOWN),
        ("Read", {"file_path": "notes.txt", "limit": True}, UNKNOWN),
        ("Read", {"file_path": ["notes.txt"]}, OUTSIDE),
        ("Read", {"file_path": "notes\0.txt"}, OUTSIDE),
        # Deny by default: arguments and tools the table does not know.
        ("Read", {"file_path": "notes.txt", "follow": "/etc"}, UNKNOWN),
        ("Glob", {"pattern": "*", "root": "/"}, UNKNOWN),
        ("TodoWrite", {"todos": []}, UNKNOWN),
        ("Task", {"prompt": "x"}, UNKNOWN),
    ],
)
def test_the_gate_refuses_what_reaches_outside(
    tool: str, arguments: dict[str, Any], why: str
) -> None:
    assert refusal(tool, arguments, CWD, ROOT) == why


def test_the_gate_follows_symlinks(tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "link").symlink_to(tmp_path)
    assert refusal("Read", {"file_path": "link/secret"}, cwd, tmp_path) == OUTSIDE
    assert refusal("Read", {"file_path": "inside"}, cwd, tmp_path) is None


def test_every_known_tool_has_a_table_entry() -> None:
    assert set(ARGUMENTS) == set(KNOWN)
    assert all(isinstance(ARGUMENTS[name], dict) for name in DEFAULT_ALLOWED)


async def test_the_table_knows_every_argument_the_cli_offers(
    start_server: Any, mock: MockAnthropic
) -> None:
    # A CLI upgrade that adds an argument fails closed (the gate refuses it); this test
    # says so at once, naming it, instead of leaving users with mysterious refusals.
    server = await start_server(tools_allowed=tuple(KNOWN))
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True)
    assert r.status_code == 200, r.text
    schemas = {t["name"]: t["input_schema"] for t in mock.messages[0].body["tools"]}
    for name, table in ARGUMENTS.items():
        offered = set(schemas[name].get("properties", {}))
        if table != UNCONFINED:
            assert isinstance(table, dict)
            assert offered == set(table), name


ATTACKS = [
    ToolUse("Grep", {"pattern": "sk-ant", "path": "~"}, id="toolu_a1"),
    ToolUse("Grep", {"pattern": "sk-ant", "path": ".", "glob": "../../**"}, id="toolu_a2"),
    ToolUse("Glob", {"pattern": "/etc/*"}, id="toolu_a3"),
    ToolUse("Glob", {"pattern": "../../../**/*.json*"}, id="toolu_a4"),
    ToolUse("Read", {"file_path": "~/../../home/.claude/.credentials.json"}, id="toolu_a5"),
    ToolUse("Read", {"file_path": "../claude/.credentials.json"}, id="toolu_a6"),
]


@pytest.mark.parametrize("sandbox", ["off", "bwrap"])
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{a.name}:{json.dumps(a.input)}")
async def test_attacks_on_the_file_tools_are_refused(
    start_server: Any, mock: MockAnthropic, tmp_path: Path, attack: ToolUse, sandbox: str
) -> None:
    server = await start_server(sandbox=sandbox)
    plant(server, tmp_path)
    mock.script(Reply.tool_calls(attack), Reply.text("Nothing found."))
    async with server.http() as http:
        r = await ask_where(http, enable_tools=True)
    assert r.status_code == 200, r.text
    output, is_error = mock.messages[1].tool_result(attack.id)
    assert is_error, output
    assert SECRET not in json.dumps(mock.messages[1].body)
    assert "/etc" not in output
