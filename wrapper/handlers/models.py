"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models this server offers."""

from __future__ import annotations

from wrapper.app import Request
from wrapper.completions import Model, ModelList, to_json
from wrapper.errors import ModelNotFound
from wrapper.http import send_json

# A fixed timestamp: Claude Code does not report when a model was published, and a
# stable value keeps clients that cache the list from seeing churn.
CREATED = 1_759_276_800  # 2025-10-01


def _model(model_id: str) -> Model:
    return Model(id=model_id, created=CREATED, owned_by="anthropic")


async def list_models(request: Request, *, models: tuple[str, ...]) -> None:
    listing = ModelList(data=[_model(m) for m in models])
    await send_json(request.send, 200, to_json(listing), request.headers)


async def get_model(request: Request, *, models: tuple[str, ...]) -> None:
    model_id = request.params["model_id"]
    if model_id not in models:
        raise ModelNotFound(f"The model '{model_id[:100]}' does not exist.", param="model")
    await send_json(request.send, 200, to_json(_model(model_id)), request.headers)
