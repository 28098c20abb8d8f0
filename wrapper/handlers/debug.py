"""``POST /v1/debug/request`` (only with ``DEBUG_MODE``): how a chat request body would be
parsed and turned into a Claude Code run, or the validation error it gets. Runs nothing."""

from __future__ import annotations

from wrapper import errors
from wrapper.app import Request
from wrapper.completions import to_json
from wrapper.convert import to_turn
from wrapper.http import send_json
from wrapper.schema import decode_chat_request


async def inspect(request: Request) -> None:
    config = request.app.config
    try:
        chat = decode_chat_request(request.body)
        turn = to_turn(chat, config.default_model)
    except errors.WrapperError as exc:
        payload = {"valid": False, **errors.openai_envelope(exc)}
    else:
        payload = {
            "valid": True,
            "parsed": to_json(chat),
            "claude_run": {
                "model": turn.model,
                "system_prompt": turn.system_prompt,
                "prompt": turn.prompt,
            },
        }
    await send_json(request.send, 200, payload, request.headers)
