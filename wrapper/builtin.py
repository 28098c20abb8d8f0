"""Pure: Claude Code's own tools (server-side execution) under the server's policy. No I/O.

Theory of operation. Claude Code's tools really run, on the server, so they are off unless a
request says ``enable_tools: true``; it then gets the server's allowed set
(``Config.tools_allowed``), which ``allowed_tools`` / ``disallowed_tools`` may narrow.
The backend offers exactly that set (``--tools``), auto-approves none of it by rule, and
decides each permission request in its gate with ``confined``.

Rules kept here:
- ``KNOWN`` is the one list of the built-in tools this server knows (the names CLI 2.1.332
  takes in ``--tools``), each with the description ``GET /v1/tools`` shows.
- A request can never widen the policy: naming a tool outside it in ``allowed_tools`` is
  refused (400, ``param: allowed_tools``), not silently clipped, so a client never believes
  it has a tool it does not. ``disallowed_tools`` may name anything: it only removes.
- File tools stay inside the run's scratch directory: a path argument that resolves
  outside it is denied. Bash cannot be confined that way, which is why it is not in the
  default policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from wrapper.errors import InvalidRequest
from wrapper.schema import ChatRequest

# Name -> what GET /v1/tools says of it. Read/Glob/Grep/Write/Edit/NotebookEdit take paths
# that ``confined`` checks; Bash and the web tools reach past the scratch directory.
KNOWN = {
    "Read": "Read a file of the run's working directory.",
    "Glob": "Find files by name pattern in the working directory.",
    "Grep": "Search file contents with regular expressions.",
    "Write": "Create or overwrite a file in the working directory.",
    "Edit": "Replace text in a file of the working directory.",
    "NotebookEdit": "Edit a cell of a Jupyter notebook in the working directory.",
    "Bash": "Run a shell command (as the server's user; not confined to the directory).",
    "WebFetch": "Fetch a URL from the server's network.",
    "WebSearch": "Search the web.",
}
# Every tool whose reach the gate can hold to the scratch directory; nothing that runs
# arbitrary commands or talks to the network.
DEFAULT_ALLOWED = ("Read", "Glob", "Grep", "Write", "Edit", "NotebookEdit")
# The arguments through which a file tool names what it touches.
PATH_ARGUMENTS = ("file_path", "notebook_path", "path")


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


def confined(arguments: dict[str, Any], cwd: Path) -> bool:
    """Whether every path a tool call names lies inside ``cwd`` (symlinks resolved)."""
    root = cwd.resolve()
    for key in PATH_ARGUMENTS:
        value = arguments.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not (root / value).resolve().is_relative_to(root):
            return False
    return True
