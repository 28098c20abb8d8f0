"""Operations: ``GET /health`` (liveness, version, what is running) and ``GET /metrics``
(Prometheus text format)."""

from __future__ import annotations

from importlib.metadata import version

from wrapper.app import Request
from wrapper.claude.backend import Backend
from wrapper.drain import Drain
from wrapper.http import send_json, send_raw
from wrapper.limits import RunGate
from wrapper.metrics import Metrics

VERSION = version("claude-code-openai-wrapper")


async def health(request: Request, *, drain: Drain, gate: RunGate, backend: Backend) -> None:
    payload = {
        "status": "draining" if drain.draining else "healthy",
        "service": "claude-code-openai-wrapper",
        "version": VERSION,
        "active_runs": gate.running,
        "live_cli_processes": backend.live_processes,
    }
    await send_json(request.send, 503 if drain.draining else 200, payload, request.headers)


async def metrics(request: Request, *, metrics: Metrics) -> None:
    body = metrics.render().encode()
    headers = {
        **request.headers,
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
        "content-length": str(len(body)),
    }
    await send_raw(request.send, 200, body, headers)
