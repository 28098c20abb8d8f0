"""``GET /v1/tools``: Claude Code's own tools, and whether this server lets a request use them.

Not an OpenAI route (OpenAI has no such list); the shape follows its list objects:
``{"object": "list", "sandbox": bool, "data": [{"name", "description", "allowed",
"confined"}]}``, in wrapper.builtin's order. ``allowed`` is the server's policy
(``CLAUDE_TOOLS_ALLOWED``): what a request with ``enable_tools: true`` gets, and the most
``allowed_tools`` may name. ``confined`` says what holds the tool in: ``"directory"`` (the
gate keeps every path it names in the run's directory, and the sandbox backs it when on),
``"sandbox"`` (only the OS sandbox: Bash, the web tools), or ``"none"`` (no sandbox: Bash
reaches all the server's user can).
"""

from __future__ import annotations

from wrapper.app import Request
from wrapper.builtin import ARGUMENTS, KNOWN
from wrapper.http import send_json


async def list_tools(request: Request, *, policy: tuple[str, ...], sandboxed: bool) -> None:
    outside = "sandbox" if sandboxed else "none"
    data = [
        {
            "object": "tool",
            "name": name,
            "description": description,
            "allowed": name in policy,
            "confined": "directory" if isinstance(ARGUMENTS[name], dict) else outside,
        }
        for name, description in KNOWN.items()
    ]
    payload = {"object": "list", "sandbox": sandboxed, "data": data}
    await send_json(request.send, 200, payload, request.headers)
