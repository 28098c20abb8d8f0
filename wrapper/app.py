"""The ASGI application: route table, request ids, the request nursery, errors -> bodies.

Order of work for each HTTP request:
1. ``Host`` must name this server (``wrapper.guard``: 400 when missing or malformed, 421
   for another name), before anything else, preflights included;
2. a CORS preflight (``OPTIONS``) on a known path is answered here when CORS is on;
3. route ``(method, path)`` -> handler, or 404 / 405 (with ``Allow``);
4. a ``POST`` body must be declared ``application/json`` (415, ``wrapper.guard``);
5. refuse new work with 503 while the server drains for shutdown (public routes still
   answer: ``/health`` says ``draining``, with 503);
6. the API key, when keys are configured (every route but the public ``/health``): an
   address that sent too many wrong keys gets 429 before its key is even compared, and
   each wrong key counts against its address, never against anyone else;
7. the client's token bucket for the route's class (429 with ``Retry-After``);
8. read the body under the configured limit (413 past it);
9. the request gets its tenant (whose sessions it sees: the key's digest, or the one
   no-key tenant) and its client (the key's digest, or the address);
10. run the handler in a nursery beside a watcher of ``receive()``: when the client
   disconnects the watcher cancels the nursery, which stops the Claude Code run at once;
11. any ``WrapperError`` becomes an error body here, and an unexpected exception a logged
   500 (``InternalError``). The body is the matched route's (``Route.render``: the API
   its clients speak); what is refused before a route matches (the ``Host``, 404, 405, a
   preflight) is OpenAI's envelope. Handlers that already started a streamed response
   report their own errors in-stream.
A handler that runs Claude Code takes a run slot itself, just before its run, once
everything that can refuse the request has passed (wrapper.handlers.chat). The app holds
no service of its own: wrapper.server builds them once and hands each handler what it uses.
Every response carries ``x-request-id`` (the client's, when it sent a sane one). One
access-log line per request: method, path, status, duration, client, model and tokens
when a handler reports them; never content, keys or tokens (``wrapper.logs`` escapes what
a client wrote into it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import trio

from wrapper import errors
from wrapper.auth import check_key, presented_key
from wrapper.config import Config
from wrapper.drain import Drain
from wrapper.guard import check_host, check_media_type
from wrapper.http import (
    SSE_CONTENT_TYPE,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_empty,
    send_error,
    watch_disconnect,
)
from wrapper.limits import RateLimiter, client_address, parse_networks
from wrapper.metrics import Metrics
from wrapper.session_store import NO_KEY_TENANT

log = logging.getLogger(__name__)

# Sane client request ids: short, printable, no header or log injection.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# What a handler may add to the access-log line: never content.
LOGGED_FIELDS = ("model", "prompt_tokens", "completion_tokens", "cost_usd", "ttft")
# Response headers a browser client may read (CORS hides the rest).
EXPOSED_HEADERS = (
    "x-request-id, x-claude-cost-usd, retry-after, x-ratelimit-limit-requests,"
    " x-ratelimit-remaining-requests, x-ratelimit-reset-requests"
)


@attrs.define
class Request:
    """One HTTP request as handlers see it."""

    scope: Scope
    send: Send
    params: dict[str, str]
    body: bytes
    # Headers every response to this request carries (x-request-id, rate limits, CORS).
    headers: dict[str, str]
    # Whose sessions and conversations it sees: the API key's digest, or NO_KEY_TENANT.
    tenant: str
    # Whose run slots it takes: the API key's digest, else the client's address.
    client: str
    # What the handler adds to the access-log line (model, tokens).
    log: dict[str, object] = attrs.field(factory=dict)


Handler = Callable[[Request], Awaitable[None]]


@attrs.frozen
class Route:
    method: str
    path: str
    handler: Handler
    # Token-bucket class (see Config.rate_limits); None: not rate limited.
    limit: str | None = None
    # Open without an API key (health checks from load balancers and systemd).
    public: bool = False
    # Runs Claude Code (its handler takes a run slot): responses carry rate-limit headers.
    runs_claude: bool = False
    # How its errors look: the error body of the API the route belongs to.
    render: errors.Renderer = errors.openai_envelope

    @property
    def template(self) -> tuple[str, ...]:
        return tuple(self.path.removeprefix("/").split("/"))


class Router:
    """A table of routes; ``{name}`` in a path template matches one path segment."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Exact paths: ``/v1/models/`` is not ``/v1/models``. HEAD is served by GET routes."""
        segments = tuple(path.removeprefix("/").split("/"))
        allowed: list[str] = []
        for route in self.routes:
            params = _match(route.template, segments)
            if params is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, params
            allowed += ["GET", "HEAD"] if route.method == "GET" else [route.method]
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


# A task the server runs beside the app for as long as it serves (started with
# ``nursery.start``): the rate limiter's sweeper, the sessions' reaper.
BackgroundTask = Callable[..., Awaitable[None]]


class App:
    """The ASGI callable: the route table and what every request goes through."""

    def __init__(
        self,
        config: Config,
        router: Router,
        limiter: RateLimiter,
        drain: Drain,
        metrics: Metrics,
        tasks: tuple[BackgroundTask, ...] = (),
    ) -> None:
        self.config = config
        self.router = router
        self.limiter = limiter
        self.drain = drain
        self.metrics = metrics
        self.tasks = tasks
        self.proxies = parse_networks(config.trusted_proxies)
        self.requests_in_flight = 0
        self.streams_in_flight = 0
        metrics.gauges["wrapper_active_requests"] = (
            "HTTP requests in flight.",
            lambda: self.requests_in_flight,
        )
        metrics.gauges["wrapper_active_streams"] = (
            "Streamed responses in flight.",
            lambda: self.streams_in_flight,
        )

    def begin_shutdown(self) -> None:
        """Refuse new requests; give runs in flight ``shutdown_grace`` seconds to finish."""
        self.drain.begin()

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
        headers = {"x-request-id": request_id, **self._cors_headers(scope)}
        peer = scope.get("client") or ("unknown", 0)
        client = client_address(peer[0], header(scope, "x-forwarded-for"), self.proxies)
        fields: dict[str, object] = {"route": "unmatched"}
        started = trio.current_time()
        status = 0
        streaming = False

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if (b"content-type", SSE_CONTENT_TYPE.encode()) in message["headers"]:
                    streaming = True
                    self.streams_in_flight += 1
            elif scope["method"] == "HEAD":
                message = {**message, "body": b""}  # the same headers, no body
            await send(message)

        self.requests_in_flight += 1
        try:
            await self._handle(
                scope, receive, tracked_send, headers, client, fields, lambda: status != 0
            )
        finally:
            self.requests_in_flight -= 1
            self.streams_in_flight -= streaming
            duration = trio.current_time() - started
            route = str(fields.pop("route"))
            self.metrics.observe(route, scope["method"], status, duration, fields)
            logged = {k: v for k, v in fields.items() if k in LOGGED_FIELDS}
            log.info(
                "%s %s %s %.3fs client=%s%s id=%s",
                scope["method"],
                scope["path"],
                status or "disconnected",
                duration,
                client,
                "".join(f" {k}={v}" for k, v in logged.items()),
                request_id,
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status or None,
                        "duration": round(duration, 6),
                        "client": client,
                        "request_id": request_id,
                        **logged,
                    }
                },
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        client: str,
        log_fields: dict[str, object],
        started: Callable[[], bool],
    ) -> None:
        render: errors.Renderer = errors.openai_envelope  # until a route says otherwise
        try:
            check_host(scope, self.config.host, self.config.allowed_hosts)
            if scope["method"] == "OPTIONS" and self._is_preflight(scope):
                await send_empty(send, 204, {**headers, **self._preflight_headers(scope)})
                return
            route, params = self.router.match(scope["method"], scope["path"])
            log_fields["route"] = route.path
            render = route.render
            check_media_type(scope)
            if self.drain.draining and not route.public:  # /health reports draining itself
                raise errors.ShuttingDown(
                    "The server is shutting down.", retry_after=errors.SHUTDOWN_RETRY_AFTER
                )
            if self.config.api_keys and not route.public:
                key = self._authenticate(scope, client)
                # Bucket per key; a digest, so the table never holds key material.
                client = "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
            if route.limit is not None and self.config.rate_limit_enabled:
                decision = self.limiter.check(route.limit, client)
                if route.runs_claude:
                    headers.update(decision.headers())
            body = await read_body(
                scope, receive, self.config.max_body_bytes, self.config.read_timeout
            )
        except ClientGone:
            return
        except errors.WrapperError as exc:
            # For the metrics: this server's own 429, not an upstream one.
            log_fields["limited"] = isinstance(exc, errors.RateLimited)
            await send_error(send, exc, headers, render)
            return
        keyed = bool(self.config.api_keys) and not route.public
        tenant = client if keyed else NO_KEY_TENANT
        request = Request(scope, send, params, body, headers, tenant, client, log_fields)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
            await _respond(route, request, started)
            nursery.cancel_scope.cancel()

    def _authenticate(self, scope: Scope, address: str) -> str:
        """The configured key the client sent. The compare is what a guesser needs, so an
        address out of failures is refused before it; only a wrong key (not a missing
        one) is a failure, charged to the address that sent it."""
        what = "Too many wrong API keys from this address"
        self.limiter.check("auth_failure", address, cost=0, what=what)
        authorization, x_api_key = header(scope, "authorization"), header(scope, "x-api-key")
        try:
            return check_key(self.config.api_keys, authorization, x_api_key)
        except errors.InvalidApiKey:
            if presented_key(authorization, x_api_key) is not None:
                self.limiter.check("auth_failure", address, what=what)
            raise

    def _cors_headers(self, scope: Scope) -> dict[str, str]:
        origin = header(scope, "origin")
        allowed = self.config.cors_origins
        if not origin or not ("*" in allowed or origin in allowed):
            return {}
        return {
            "access-control-allow-origin": "*" if "*" in allowed else origin,
            "access-control-expose-headers": EXPOSED_HEADERS,
            "vary": "origin",
        }

    def _is_preflight(self, scope: Scope) -> bool:
        return bool(
            self.config.cors_origins
            and header(scope, "access-control-request-method")
            and self._cors_headers(scope)
        )

    def _preflight_headers(self, scope: Scope) -> dict[str, str]:
        methods: set[str] = set()
        for method in ("GET", "POST", "DELETE"):
            with contextlib.suppress(errors.WrapperError):
                self.router.match(method, scope["path"])
                methods.add(method)
        if not methods:
            raise errors.NotFound(f"Unknown path: {scope['path']}.")
        return {
            "access-control-allow-methods": ", ".join(sorted(methods)),
            "access-control-allow-headers": header(scope, "access-control-request-headers")
            or "authorization, content-type",
            # Browsers cap this anyway (Chrome: 2 h); a day saves preflights elsewhere.
            "access-control-max-age": "86400",
        }


async def _respond(route: Route, request: Request, started: Callable[[], bool]) -> None:
    """Run the route's handler; turn what it raises into the route's error body (here, and
    only here)."""
    try:
        await route.handler(request)
    except errors.WrapperError as exc:
        if started():  # a streaming handler reports its own errors in-stream
            log.error("error after the response started: %s", exc.message)
        else:
            await send_error(request.send, exc, request.headers, route.render)
    except Exception:
        log.exception("unhandled error on %s %s", request.scope["method"], request.scope["path"])
        if not started():
            internal = errors.InternalError("Internal server error.")
            await send_error(request.send, internal, request.headers, route.render)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
