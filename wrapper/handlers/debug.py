"""``POST /v1/debug/request`` (only with ``DEBUG_MODE``): how a chat request body would be
parsed and turned into a Claude Code run, or the validation error it gets. Runs nothing.

The body goes through the chat route's own parser (``convert.parse``), so what this says
of a body is what the chat route would do with it: ``{"valid": true, ...}`` with the
parsed request and the run, or ``{"valid": false, "error": ...}`` with the 400 the chat
route would answer, both with status 200.
"""

from __future__ import annotations

from wrapper import errors
from wrapper.app import Request
from wrapper.completions import to_json
from wrapper.convert import parse
from wrapper.http import send_json


async def inspect(request: Request, *, default_model: str) -> None:
    try:
        parsed = parse(request.body, default_model)
    except errors.InvalidRequest as exc:
        payload = {"valid": False, **errors.openai_envelope(exc)}
    else:
        turn = parsed.ask.turn
        payload = {
            "valid": True,
            "parsed": to_json(parsed.request),
            "claude_run": {
                "model": turn.model,
                "system_prompt": turn.system_prompt,
                "prompt": turn.prompt,
            },
        }
    await send_json(request.send, 200, payload, request.headers)
