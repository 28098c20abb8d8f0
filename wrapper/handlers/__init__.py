"""One module per resource; ``routes`` is the whole route table of the server."""

from __future__ import annotations

from wrapper.app import Route
from wrapper.config import Config
from wrapper.handlers import chat, debug, health, models, sessions, status, tools


def routes(config: Config) -> list[Route]:
    table = [
        Route("POST", "/v1/chat/completions", chat.create, limit="chat", runs_claude=True),
        Route("GET", "/v1/models", models.list_models, limit="read"),
        Route("GET", "/v1/models/{model_id}", models.get_model, limit="read"),
        Route("GET", "/v1/tools", tools.list_tools, limit="read"),
        Route("GET", "/v1/sessions", sessions.list_sessions, limit="read"),
        # Before {session_id}: the first route that matches wins.
        Route("GET", "/v1/sessions/stats", sessions.stats, limit="read"),
        Route("GET", "/v1/sessions/{session_id}", sessions.get_session, limit="read"),
        Route("DELETE", "/v1/sessions/{session_id}", sessions.delete_session),
        Route("GET", "/v1/auth/status", status.auth_status, limit="auth"),
        Route("GET", "/health", health.health, limit="health", public=True),
        Route("GET", "/metrics", health.metrics, public=config.metrics_public, limit="read"),
    ]
    if config.debug_mode:  # otherwise the path does not exist: a plain 404
        table.append(Route("POST", "/v1/debug/request", debug.inspect, limit="debug"))
    return table
