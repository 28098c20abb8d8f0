"""``GET /v1/tools``: Claude Code's own tools, and whether this server lets a request use them.

Not an OpenAI route (OpenAI has no such list); the shape follows its list objects:
``{"object": "list", "data": [{"name", "description", "allowed"}]}``, in wrapper.builtin's
order. ``allowed`` is the server's policy (``CLAUDE_TOOLS_ALLOWED``): what a request with
``enable_tools: true`` gets, and the most ``allowed_tools`` may name.
"""

from __future__ import annotations

from wrapper.app import Request
from wrapper.builtin import KNOWN
from wrapper.http import send_json


async def list_tools(request: Request) -> None:
    policy = request.app.config.tools_allowed
    data = [
        {"object": "tool", "name": name, "description": description, "allowed": name in policy}
        for name, description in KNOWN.items()
    ]
    await send_json(request.send, 200, {"object": "list", "data": data}, request.headers)
