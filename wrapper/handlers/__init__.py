"""One module per resource; ``routes`` is the whole route table of the server, each
handler bound to the services it uses (built once, in wrapper.server)."""

from __future__ import annotations

from functools import partial

from wrapper.app import Route
from wrapper.claude.backend import Backend
from wrapper.config import Config
from wrapper.drain import Drain
from wrapper.handlers import chat, debug, health, models, sessions, status, tools
from wrapper.limits import RunGate
from wrapper.metrics import Metrics
from wrapper.placement import Placement
from wrapper.runner import Runner
from wrapper.sessions import Sessions


def routes(
    config: Config,
    *,
    backend: Backend,
    placement: Placement,
    kept: Sessions,
    gate: RunGate,
    drain: Drain,
    metrics: Metrics,
) -> list[Route]:
    completions = chat.Completions(config, Runner(config, placement, gate, backend, drain))
    listed = partial(models.list_models, models=config.models)
    model = partial(models.get_model, models=config.models)
    known = partial(tools.list_tools, policy=config.tools_allowed, sandboxed=backend.sandboxed)
    ttl = config.session_ttl
    listing = partial(sessions.list_sessions, sessions=kept, ttl=ttl)
    totals = partial(sessions.stats, sessions=kept, ttl=ttl)
    one = partial(sessions.get_session, sessions=kept, ttl=ttl)
    delete = partial(sessions.delete_session, sessions=kept)
    table = [
        Route("POST", "/v1/chat/completions", completions, limit="chat", runs_claude=True),
        Route("GET", "/v1/models", listed, limit="read"),
        Route("GET", "/v1/models/{model_id}", model, limit="read"),
        Route("GET", "/v1/tools", known, limit="read"),
        Route("GET", "/v1/sessions", listing, limit="read"),
        # Before {session_id}: the first route that matches wins.
        Route("GET", "/v1/sessions/stats", totals, limit="read"),
        Route("GET", "/v1/sessions/{session_id}", one, limit="read"),
        Route("DELETE", "/v1/sessions/{session_id}", delete),
        Route("GET", "/v1/auth/status", partial(status.auth_status, config=config), limit="auth"),
        Route(
            "GET",
            "/health",
            partial(health.health, drain=drain, gate=gate, backend=backend),
            limit="health",
            public=True,
        ),
        Route(
            "GET",
            "/metrics",
            partial(health.metrics, metrics=metrics),
            public=config.metrics_public,
            limit="read",
        ),
    ]
    if config.debug_mode:  # otherwise the path does not exist: a plain 404
        inspect = partial(debug.inspect, default_model=config.default_model)
        table.append(Route("POST", "/v1/debug/request", inspect, limit="debug"))
    return table
