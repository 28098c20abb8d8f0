"""One module per resource; ``ROUTES`` is the whole route table of the server."""

from __future__ import annotations

from wrapper.app import Handler
from wrapper.handlers import chat, health, models

ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/chat/completions", chat.create),
    ("GET", "/v1/models", models.list_models),
    ("GET", "/v1/models/{model_id}", models.get_model),
    ("GET", "/health", health.health),
]
