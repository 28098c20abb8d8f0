"""``/v1/sessions``: list, stats, one session's details, delete.

Sessions are created by chat requests that name one (``session_id`` or ``X-Session-Id``,
see wrapper.sessions); here they are looked at and removed. Each request sees only its
tenant's sessions (``Request.tenant``): an id that is unknown, malformed or another API
key's is a 404 ``session_not_found`` on ``GET``/``DELETE``: it names nothing this tenant
holds.

The list is paginated as OpenAI's lists are: ``limit`` (1 to ``MAX_PAGE``, default
``DEFAULT_PAGE``) and ``after`` (the last id of the previous page), newest session first;
the answer carries ``first_id``, ``last_id`` and ``has_more``. A bad parameter is a 400
naming it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from wrapper.app import Request
from wrapper.errors import InvalidRequest, SessionNotFound
from wrapper.http import send_json
from wrapper.plan import SESSION_ID_RE
from wrapper.sessions import Sessions

# OpenAI's list endpoints (files, assistants, batches): 20 by default, at most 100.
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _session_id(request: Request) -> str:
    session_id = request.params["session_id"]
    if not SESSION_ID_RE.fullmatch(session_id):
        raise SessionNotFound(f"No session '{session_id[:128]}'.", param="session_id")
    return session_id


def _page_params(request: Request) -> tuple[int, str | None]:
    query = request.scope.get("query_string", b"").decode("latin-1")
    params = dict(parse_qsl(query, keep_blank_values=True))
    limit = DEFAULT_PAGE
    if (raw := params.get("limit")) is not None:
        if not (len(raw) <= 3 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE):
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer from 1 to {MAX_PAGE}.", param="limit"
            )
        limit = int(raw)
    after = params.get("after")
    if after is not None and not SESSION_ID_RE.fullmatch(after):
        raise InvalidRequest("Invalid 'after': expected a session id.", param="after")
    return limit, after


async def list_sessions(request: Request, *, sessions: Sessions, ttl: float) -> None:
    limit, after = _page_params(request)
    rows, more = await sessions.page(request.tenant, limit, after)
    payload = {
        "object": "list",
        "data": [row.to_json(ttl) for row in rows],
        "first_id": rows[0].id if rows else None,
        "last_id": rows[-1].id if rows else None,
        "has_more": more,
    }
    await send_json(request.send, 200, payload, request.headers)


async def stats(request: Request, *, sessions: Sessions, ttl: float) -> None:
    totals = await sessions.totals(request.tenant)
    payload = {
        "object": "session.stats",
        "sessions": totals.sessions,
        "messages": totals.messages,
        "usage": {
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "total_tokens": totals.prompt_tokens + totals.completion_tokens,
        },
        "cost_usd": round(totals.cost_usd, 6),
        "ttl_seconds": ttl,
    }
    await send_json(request.send, 200, payload, request.headers)


async def get_session(request: Request, *, sessions: Sessions, ttl: float) -> None:
    row = await sessions.get(request.tenant, _session_id(request))
    await send_json(request.send, 200, row.to_json(ttl), request.headers)


async def delete_session(request: Request, *, sessions: Sessions) -> None:
    session_id = _session_id(request)
    await sessions.delete(request.tenant, session_id)
    payload = {"id": session_id, "object": "session.deleted", "deleted": True}
    await send_json(request.send, 200, payload, request.headers)
