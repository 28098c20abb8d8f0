"""The ASGI application: route table, request ids, the request nursery, errors -> envelope.

Order of work for each HTTP request:
1. route ``(method, path)`` -> handler, or 404 / 405 (with ``Allow``);
2. refuse new work with 503 while the server drains for shutdown;
3. read the body under the configured limit (413 past it);
4. run the handler in a nursery beside a watcher of ``receive()``: when the client
   disconnects the watcher cancels the nursery, which stops the Claude Code run at once;
5. any ``WrapperError`` that escapes the handler becomes the OpenAI envelope here, and an
   unexpected exception a logged 500 envelope. Handlers that already started a streamed
   response report their own errors in-stream.
Every response carries ``x-request-id`` (the client's, when it sent a sane one).
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from wrapper import errors
from wrapper.claude import Backend
from wrapper.config import Config
from wrapper.http import (
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_error,
    watch_disconnect,
)

log = logging.getLogger(__name__)

# Sane client request ids: short, printable, no header or log injection.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@attrs.define
class Request:
    """One HTTP request as handlers see it."""

    app: App
    scope: Scope
    send: Send
    params: dict[str, str]
    body: bytes
    # Headers every response to this request carries (x-request-id).
    headers: dict[str, str]


Handler = Callable[[Request], Awaitable[None]]


class Router:
    """A table of (method, path template) -> handler; ``{name}`` matches one path segment."""

    def __init__(self, routes: list[tuple[str, str, Handler]]) -> None:
        self.routes = [(m, tuple(t.removeprefix("/").split("/")), h) for m, t, h in routes]

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Exact paths: ``/v1/models/`` is not ``/v1/models``. HEAD is served by GET routes."""
        segments = tuple(path.removeprefix("/").split("/"))
        allowed: list[str] = []
        for route_method, template, handler in self.routes:
            params = _match(template, segments)
            if params is None:
                continue
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                return handler, params
            allowed += ["GET", "HEAD"] if route_method == "GET" else [route_method]
        if allowed:
            raise errors.MethodNotAllowed(
                f"Method {method} is not allowed for {path}; use {', '.join(allowed)}.",
                headers={"allow": ", ".join(allowed)},
            )
        raise errors.NotFound(f"Unknown path: {method} {path}.")


def _match(template: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params = {}
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


class App:
    """The ASGI callable. Holds the config, the backend and the runs in flight."""

    def __init__(self, config: Config, backend: Backend, router: Router) -> None:
        self.config = config
        self.backend = backend
        self.router = router
        self.draining = False
        self._runs: set[trio.CancelScope] = set()
        self._stop_deadline = math.inf

    @contextmanager
    def run_scope(self) -> Iterator[trio.CancelScope]:
        """A scope for one Claude Code run that shutdown can cut short."""
        scope = trio.CancelScope(deadline=self._stop_deadline)
        self._runs.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._runs.discard(scope)

    def begin_shutdown(self) -> None:
        """Refuse new requests; give runs in flight ``shutdown_grace`` seconds to finish."""
        self.draining = True
        self._stop_deadline = trio.current_time() + self.config.shutdown_grace
        for scope in self._runs:
            scope.deadline = min(scope.deadline, self._stop_deadline)

    @property
    def active_runs(self) -> int:
        return len(self._runs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client_id = header(scope, "x-request-id") or ""
        request_id = (
            client_id if REQUEST_ID_RE.fullmatch(client_id) else f"req_{secrets.token_hex(12)}"
        )
        headers = {"x-request-id": request_id}
        started = trio.current_time()
        status = 0

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif scope["method"] == "HEAD":
                message = {**message, "body": b""}  # the same headers, no body
            await send(message)

        try:
            await self._handle(scope, receive, tracked_send, headers, lambda: status != 0)
        finally:
            log.info(
                "%s %s %s %.3fs id=%s",
                scope["method"],
                scope["path"],
                status or "disconnected",
                trio.current_time() - started,
                request_id,
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        started: Callable[[], bool],
    ) -> None:
        try:
            handler, params = self.router.match(scope["method"], scope["path"])
            if self.draining:
                raise errors.ShuttingDown("The server is shutting down.", retry_after=5)
            body = await read_body(scope, receive, self.config.max_body_bytes)
        except ClientGone:
            return
        except errors.WrapperError as exc:
            await send_error(send, exc, headers)
            return
        request = Request(self, scope, send, params, body, headers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
            await _respond(handler, request, started)
            nursery.cancel_scope.cancel()


async def _respond(handler: Handler, request: Request, started: Callable[[], bool]) -> None:
    """Run the handler; turn what it raises into the envelope (here, and only here)."""
    try:
        await handler(request)
    except errors.WrapperError as exc:
        if started():  # a streaming handler reports its own errors in-stream
            log.error("error after the response started: %s", exc.message)
        else:
            await send_error(request.send, exc, request.headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.scope["method"], request.scope["path"])
        if not started():
            internal = errors.WrapperError("Internal server error.", code="internal_error")
            await send_error(request.send, internal, request.headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
