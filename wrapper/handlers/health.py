"""Operations: ``GET /health`` (liveness, version, what is running) and ``GET /metrics``
(Prometheus text format)."""

from __future__ import annotations

from importlib.metadata import version

from wrapper.app import Request
from wrapper.http import send_json, send_raw

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


async def metrics(request: Request) -> None:
    body = request.app.metrics.render().encode()
    headers = {
        **request.headers,
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "content-length": str(len(body)),
    }
    await send_raw(request.send, 200, body, headers)
