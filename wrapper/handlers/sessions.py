"""``/v1/sessions``: list, stats, one session's details, delete.

Sessions are created by chat requests that name one (``session_id`` or ``X-Session-Id``,
see wrapper.sessions); here they are looked at and removed. An unknown or malformed id on
``GET``/``DELETE`` is a 404 ``session_not_found``: it names nothing this server holds.
"""

from __future__ import annotations

from wrapper.app import Request
from wrapper.errors import SessionNotFound
from wrapper.http import send_json
from wrapper.sessions import SESSION_ID_RE


def _session_id(request: Request) -> str:
    session_id = request.params["session_id"]
    if not SESSION_ID_RE.fullmatch(session_id):
        raise SessionNotFound(f"No session '{session_id[:128]}'.", param="session_id")
    return session_id


async def list_sessions(request: Request) -> None:
    ttl = request.app.config.session_ttl
    rows = await request.app.sessions.all()
    payload = {"object": "list", "data": [row.to_json(ttl) for row in rows]}
    await send_json(request.send, 200, payload, request.headers)


async def stats(request: Request) -> None:
    rows = await request.app.sessions.all()
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(r.completion_tokens for r in rows)
    payload = {
        "object": "session.stats",
        "sessions": len(rows),
        "messages": sum(r.message_count for r in rows),
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "cost_usd": round(sum(r.cost_usd for r in rows), 6),
        "ttl_seconds": request.app.config.session_ttl,
    }
    await send_json(request.send, 200, payload, request.headers)


async def get_session(request: Request) -> None:
    row = await request.app.sessions.get(_session_id(request))
    await send_json(request.send, 200, row.to_json(request.app.config.session_ttl), request.headers)


async def delete_session(request: Request) -> None:
    session_id = _session_id(request)
    await request.app.sessions.delete(session_id)
    payload = {"id": session_id, "object": "session.deleted", "deleted": True}
    await send_json(request.send, 200, payload, request.headers)
