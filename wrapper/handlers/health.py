"""``GET /health``: liveness, the version, and what is running."""

from __future__ import annotations

from importlib.metadata import version

from wrapper.app import Request
from wrapper.http import send_json

VERSION = version("claude-code-openai-wrapper")


async def health(request: Request) -> None:
    app = request.app
    payload = {
        "status": "draining" if app.draining else "healthy",
        "service": "claude-code-openai-wrapper",
        "version": VERSION,
        "active_runs": app.active_runs,
        "live_cli_processes": app.backend.live_processes,
    }
    await send_json(request.send, 503 if app.draining else 200, payload, request.headers)
