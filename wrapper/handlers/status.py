"""``GET /v1/auth/status``: which Claude authentication the server would use, and whether
this server's own key protection is on. Names of settings only, never their values."""

from __future__ import annotations

from wrapper.app import Request
from wrapper.auth import claude_auth_status
from wrapper.config import Config
from wrapper.http import send_json


async def auth_status(request: Request, *, config: Config) -> None:
    payload = {
        "claude_code_auth": claude_auth_status(
            config.claude_environment(), config.claude_config_dir()
        ),
        "server_info": {
            "api_key_required": bool(config.api_keys),
            "api_keys_configured": len(config.api_keys),
            "rate_limit_enabled": config.rate_limit_enabled,
        },
    }
    await send_json(request.send, 200, payload, request.headers)
