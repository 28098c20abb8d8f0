"""Pure: Claude Code's own tools (server-side execution) under the server's policy. No I/O.

Theory of operation. Claude Code's tools really run, on the server, so they are off unless a
request says ``enable_tools: true``; it then gets the server's allowed set
(``Config.tools_allowed``), which ``allowed_tools`` / ``disallowed_tools`` may narrow.
The backend offers exactly that set (``--tools``), auto-approves none of it by rule, and
decides each permission request in its gate with ``refusal``.

Rules kept here:
- ``KNOWN`` is the one list of the built-in tools this server knows (the names CLI 2.1.332
  takes in ``--tools``), each with the description ``GET /v1/tools`` shows; ``ARGUMENTS``
  says how the gate reads every argument of each.
- A request can never widen the policy: naming a tool outside it in ``allowed_tools`` is
  refused (400, ``param: allowed_tools``), not silently clipped, so a client never believes
  it has a tool it does not. ``disallowed_tools`` may name anything: it only removes.
- The gate judges what the CLI will touch, not the text Claude wrote: ``~`` is expanded
  with the run's HOME, a path is taken relative to the run's directory with symlinks
  resolved, a glob must stay relative with no ``..`` in any brace alternative. Deny by
  default: an unknown tool or argument, a wrong type, or a value it cannot prove inside
  the directory is refused.
- Bash and the web tools cannot be confined by the gate, which is why they are not in the
  default policy; when an operator allows them, only the OS sandbox (wrapper.sandbox)
  limits what Bash reaches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from wrapper.errors import InvalidRequest
from wrapper.schema import ChatRequest

# Name -> what GET /v1/tools says of it. The file tools take paths that the gate below
# holds to the run's directory; Bash and the web tools reach past it.
KNOWN = {
    "Read": "Read a file of the run's working directory.",
    "Glob": "Find files by name pattern in the working directory.",
    "Grep": "Search file contents with regular expressions.",
    "Write": "Create or overwrite a file in the working directory.",
    "Edit": "Replace text in a file of the working directory.",
    "NotebookEdit": "Edit a cell of a Jupyter notebook in the working directory.",
    "Bash": "Run a shell command as the server's user: NOT confined to the directory"
    " (only by the sandbox, when it is on).",
    "WebFetch": "Fetch a URL from the server's network.",
    "WebSearch": "Search the web.",
}
# Every tool whose reach the gate can hold to the scratch directory; nothing that runs
# arbitrary commands or talks to the network.
DEFAULT_ALLOWED = ("Read", "Glob", "Grep", "Write", "Edit", "NotebookEdit")

# How the gate reads each argument of each tool it lets run. Any argument or tool missing
# here is refused, and so is a value the gate cannot prove harmless: a CLI upgrade that
# adds an argument fails closed. Names and types: CLI 2.1.332's tool schemas
# (tests/test_gate.py checks the table against the schemas the CLI offers).
PATH = "path"  # a file or directory: ~ expanded, relative to the cwd, symlinks followed
GLOB = "glob"  # a pattern matched below a directory, which can itself name a place
WORD = "word"  # a short name the tool looks up (ripgrep's --type, a cell type)
PATTERN = "pattern"  # a regular expression, handed to ripgrep: never an option
TEXT = "text"  # content: names nothing on disk
NUMBER = "number"
FLAG = "flag"
UNCONFINED = "unconfined"  # the tool itself reaches past the directory (Bash, the web)
ARGUMENTS: dict[str, dict[str, str] | str] = {
    "Read": {
        "file_path": PATH,
        "offset": NUMBER,
        "limit": NUMBER,
        "pages": WORD,
        "allow_large": FLAG,
    },
    "Write": {"file_path": PATH, "content": TEXT},
    "Edit": {"file_path": PATH, "old_string": TEXT, "new_string": TEXT, "replace_all": FLAG},
    "NotebookEdit": {
        "notebook_path": PATH,
        "cell_id": WORD,
        "new_source": TEXT,
        "cell_type": WORD,
        "edit_mode": WORD,
    },
    "Glob": {"pattern": GLOB, "path": PATH},
    "Grep": {
        "pattern": PATTERN,
        "path": PATH,
        "glob": GLOB,
        "type": WORD,
        "output_mode": WORD,
        **dict.fromkeys(("-A", "-B", "-C", "context", "head_limit", "offset"), NUMBER),
        **dict.fromkeys(("-n", "-i", "-o", "multiline"), FLAG),
    },
    "Bash": UNCONFINED,
    "WebFetch": UNCONFINED,
    "WebSearch": UNCONFINED,
}
# Letters, digits and - _ . , (a page range "1-5", a cell id): no path separator, no option.
WORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+-]{0,63}")
# Brace alternatives a glob may expand to: ripgrep and the CLI's Glob take {a,b}; a bound
# keeps a crafted pattern from costing more than a moment to check.
MAX_ALTERNATIVES = 256
# Refusals, as Claude Code records them for Claude (the run goes on).
OUTSIDE = "Only paths inside the current working directory may be used."
UNKNOWN = "This tool or argument is not allowed by the server."


@attrs.frozen
class ToolRequest:
    """What a chat request asks of the built-in tools, before the policy is applied."""

    enabled: bool = False
    allowed: tuple[str, ...] | None = None
    disallowed: tuple[str, ...] = ()


def requested(request: ChatRequest) -> ToolRequest:
    allowed = request.allowed_tools
    return ToolRequest(
        enabled=bool(request.enable_tools),
        allowed=tuple(allowed) if allowed is not None else None,
        disallowed=tuple(request.disallowed_tools or ()),
    )


def effective(request: ToolRequest, policy: tuple[str, ...]) -> tuple[str, ...]:
    """The tools a run gets: the policy, narrowed by the request. Refuses a widening."""
    if not request.enabled:
        if request.allowed:
            raise InvalidRequest(
                "Invalid value for 'allowed_tools': Claude Code's tools are off unless"
                " 'enable_tools' is true.",
                param="allowed_tools",
            )
        return ()
    if request.allowed is not None:
        for index, name in enumerate(request.allowed):
            if name not in policy:
                raise InvalidRequest(
                    f"Invalid value for 'allowed_tools[{index}]': {name[:64]!r} is not allowed"
                    f" by this server (allowed: {', '.join(policy) or 'none'}).",
                    param="allowed_tools",
                    code="tool_not_allowed",
                )
    chosen = policy if request.allowed is None else request.allowed
    return tuple(n for n in dict.fromkeys(chosen) if n not in request.disallowed)


def refusal(tool: str, arguments: dict[str, Any], cwd: Path, home: Path) -> str | None:
    """Why the call must not run, or None when all it names lies inside ``cwd``, read as
    the CLI reads it (``home`` is the HOME the CLI runs with)."""
    table = ARGUMENTS.get(tool)
    if table == UNCONFINED:
        return None
    if not isinstance(table, dict):
        return UNKNOWN
    root = cwd.resolve()
    for name, value in arguments.items():
        kind = table.get(name)
        if kind is None:
            return UNKNOWN
        if not _fits(kind, value, root, home):
            return OUTSIDE if kind in (PATH, GLOB) else UNKNOWN
    return None


def _fits(kind: str, value: object, root: Path, home: Path) -> bool:
    if kind == NUMBER:
        return type(value) in (int, float)
    if kind == FLAG:
        return type(value) is bool
    if not isinstance(value, str) or "\0" in value:
        return False
    if kind == TEXT:
        return True
    if kind == PATTERN:
        return not value.startswith("-")
    if kind == WORD:
        return WORD_RE.fullmatch(value) is not None
    if kind == PATH:
        return _inside(value, root, home)
    assert kind == GLOB, kind
    return _glob_inside(value)


def _inside(path: str, root: Path, home: Path) -> bool:
    """Whether ``path`` names something in ``root`` once the CLI expands it."""
    if "$" in path:  # no environment expansion is expected; none is proven absent
        return False
    if path == "~" or path.startswith("~/"):
        path = str(home) + path[1:]
    elif path.startswith("~"):  # ~user: another account's home
        return False
    return (root / path).resolve().is_relative_to(root)


def _glob_inside(pattern: str) -> bool:
    """Whether every alternative of a glob stays below the directory it is matched in:
    relative, no ``..`` anywhere, no escapes (which could hide either)."""
    if "\\" in pattern or ".." in pattern:
        return False
    alternatives = _expand_braces(pattern)
    if alternatives is None:
        return False
    return not any(a.startswith(("/", "~")) for a in alternatives)


def _expand_braces(pattern: str) -> list[str] | None:
    """Every brace alternative of ``pattern`` (None past ``MAX_ALTERNATIVES``)."""
    done: list[str] = []
    todo = [pattern]
    while todo:
        if len(done) + len(todo) > MAX_ALTERNATIVES:
            return None
        item = todo.pop()
        close = item.find("}")
        open_ = item.rfind("{", 0, close) if close != -1 else -1
        if open_ == -1:
            done.append(item)
            continue
        head, body, tail = item[:open_], item[open_ + 1 : close], item[close + 1 :]
        todo += [head + choice + tail for choice in body.split(",")]
    return done
