"""Fixes at the hypercorn boundary: hypercorn 0.18.0's trio worker, plain TCP, HTTP/1.1 (h11).

What each fixes (all found by the stress runs of issue 10, all reproduced with raw sockets
in tests/test_hypercorn_fixes.py):
1. A crash (pgjones/hypercorn#203). When the protocol closes a connection, hypercorn's
   ``TCPServer._close`` calls ``send_eof`` without the connection's send lock. If another
   task writes at that moment (hypercorn's own 400 for bytes h11 cannot parse, racing the
   app's early 401/404/413), trio raises ``BusyResourceError`` in the writer and it escapes
   every nursery up to ``serve``: the process exits. Here the protocol's close takes the
   send lock, so one task at a time touches the socket's sending side (hypercorn's final
   ``_close`` is left alone: it runs once every other task of the connection has ended).
2. Lost answers. Closing a socket with unread input makes the kernel send a reset, and the
   client may lose the answer it had not read yet (a 413 mid-upload, a 503 while
   draining). The close is done in stages as RFC 9112 section 9.6 describes: half-close,
   read and discard what still arrives (until EOF, at most ``LINGER`` seconds), then close.
   When the bad bytes follow a request h11 judged whole and the app's answer is under way,
   that answer is finished first (hypercorn closes again once it is).
3. Idle connections never closed. The keep-alive timer is restarted from inside the app's
   last ``send``, just after hypercorn hands the app ``http.disconnect``; the app's
   disconnect watcher then cancels the request's nursery, and the restart with it. The
   restart (and the half-close, sent the same way) is shielded here: it is connection
   state, not request state, and waits on no peer. Once the reader has seen the end of the
   input the timer is stopped, so a connection the client closed does not hold its file
   descriptor until the timer fires.
4. Empty error answers. hypercorn's own 400/431/501 (h11 parse errors), 500 (the app ended
   without answering) and WebSocket refusals had no body; here each is an OpenAI envelope
   (an error class of wrapper.errors) with ``connection: close``, written in one piece so
   the app's racing answer cannot split it, and the connection is then closed (WSStream's
   400 for a bad handshake left it open).
5. No cap on open connections. Past ``Connections.limit`` a new connection is answered a
   503 envelope (``too_many_connections``) and closed in stages.

Why here: the crash and the lost answers arise in hypercorn's connection object whatever
the app does. Reading the body in the app before answering would cover only what it routes,
not bytes after a request h11 already judged complete (an HTTP/1.0 POST with no
Content-Length has an empty body for h11; what follows is garbage to it). A patched fork
would be a dependency to carry for a few dozen lines.

How it is wired: ``install()`` replaces two names hypercorn looks up each time it builds a
connection, ``hypercorn.trio.run.TCPServer`` and ``hypercorn.protocol.H11Protocol``, with the
subclasses here (process-wide: any hypercorn server in the process gets them). ``UPSTREAM``
holds a digest of the source of every hypercorn function these subclasses override or rely
on; ``upstream_drift()`` names those that changed, and a test fails on any. After a hypercorn
upgrade: read what changed, check each fix is still needed and still right, run the tests,
then update ``HYPERCORN_VERSION`` and the digests (or delete a fix upstream has made).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import logging
import math
import re
import sys
from importlib.metadata import version
from typing import Any

import attrs
import h11
import hypercorn.config
import hypercorn.protocol
import hypercorn.protocol.h11
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import H11SendableEvent

from wrapper import errors

log = logging.getLogger(__name__)

HYPERCORN_VERSION = "0.18.0"
# RFC 9112 9.6 leaves the linger's length open; nginx's lingering_timeout default is 5 s.
LINGER = 5.0
# h11 error messages can quote a whole header line (up to MAX_HEADER_BYTES): enough to see it.
DETAIL_CHARS = 200
# h11 quotes the bytes it refused as bytearray(b'...'): the quoted bytes say enough.
BYTEARRAY_RE = re.compile(r"bytearray\((b'.*?'|b\".*?\")\)")
# The headers of hypercorn's own empty error answers (HTTPStream/WSStream._send_error_response).
EMPTY_ERROR_HEADERS = [(b"content-length", b"0"), (b"connection", b"close")]
# h11's error_status_hint -> the error we answer with (h11 0.16 hints only these three).
FRAMING_ERRORS: dict[int, type[errors.MalformedRequest]] = {
    400: errors.MalformedRequest,
    431: errors.HeadersTooLarge,
    501: errors.UnsupportedFraming,
}

# sha256 (first 16 hex digits) of the source of what the subclasses override or rely on.
UPSTREAM = {
    "hypercorn.trio.run:worker_serve": "8dc8347a9fc357ca",
    "hypercorn.trio.tcp_server:TCPServer.run": "fd34b021d1a86c98",
    "hypercorn.trio.tcp_server:TCPServer.protocol_send": "225856426bff7be0",
    "hypercorn.trio.tcp_server:TCPServer._read_data": "7ca747d922c65cf1",
    "hypercorn.trio.tcp_server:TCPServer._close": "bc73c4ae25a1ceec",
    "hypercorn.trio.tcp_server:TCPServer._idle_timeout": "210ce1014d98e1cb",
    "hypercorn.protocol:ProtocolWrapper.__init__": "df25e181b9e2e64d",
    "hypercorn.protocol.h11:H11Protocol._handle_events": "bd4a76b2837e8722",
    "hypercorn.protocol.h11:H11Protocol._send_error_response": "58c2b47ae295d000",
    "hypercorn.protocol.h11:H11Protocol._maybe_recycle": "3ac53f52bc4e65de",
    "hypercorn.protocol.h11:H11Protocol.stream_send": "56a36254a368d71a",
    "hypercorn.protocol.http_stream:HTTPStream._send_error_response": "57f849b2813e5779",
    "hypercorn.protocol.ws_stream:WSStream._send_error_response": "8b6acae9ca1ce378",
}


def source_digest(name: str) -> str:
    """The digest of ``module:qualified.name``'s source, as ``UPSTREAM`` records it."""
    module, _, path = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()[:16]


def upstream_drift() -> list[str]:
    """What changed in hypercorn since these fixes were checked (empty: nothing)."""
    drift = [name for name, digest in UPSTREAM.items() if source_digest(name) != digest]
    if version("hypercorn") != HYPERCORN_VERSION:
        drift.insert(0, f"hypercorn {version('hypercorn')} (checked: {HYPERCORN_VERSION})")
    return drift


def install() -> None:
    """Make hypercorn build its connections from the classes here. Idempotent."""
    if drift := upstream_drift():
        log.warning("hypercorn changed since wrapper.hypercorn_fixes was checked: %s", drift)
    hypercorn.trio.run.TCPServer = TCPServer  # type: ignore[attr-defined]
    hypercorn.protocol.H11Protocol = H11Protocol  # type: ignore[attr-defined]


@attrs.define
class Connections:
    """Open connections of one server, against its cap."""

    limit: int
    open: int = 0


class HypercornConfig(hypercorn.config.Config):
    """hypercorn's settings, plus the cap on open connections it does not have."""

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.connections = Connections(max_connections)


def error_response(error: errors.WrapperError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the envelope for ``error``, on a connection about to close."""
    body = json.dumps(errors.openai_envelope(error), separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "connection": "close",
        **error.headers(),
    }
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()], body


def framing_error(status: int, detail: str) -> errors.MalformedRequest:
    """The error for h11's parse error ``detail`` with status hint ``status``."""
    kind = FRAMING_ERRORS.get(status, errors.MalformedRequest)
    if kind is errors.HeadersTooLarge:
        return kind("The request line and headers exceed the server's limit (MAX_HEADER_BYTES).")
    return kind(f"Malformed HTTP request: {detail[:DETAIL_CHARS]}.")


class H11Protocol(hypercorn.protocol.h11.H11Protocol):
    """hypercorn's HTTP/1.1 protocol, whose own error answers are envelopes (fix 4)."""

    async def _send_error_response(self, status_code: int) -> None:
        # hypercorn calls this only inside _handle_events' ``except h11.RemoteProtocolError``,
        # so the exception being handled is h11's, with the message saying what was wrong.
        error = sys.exception()
        detail = str(error) if isinstance(error, h11.ProtocolError) else "unreadable request"
        detail = BYTEARRAY_RE.sub(r"\1", detail)
        await self._send_envelope(framing_error(status_code, detail), end=True)

    # Set by a stream's own error answer, which says ``connection: close``.
    _close_after_answer = False

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and event.headers == EMPTY_ERROR_HEADERS:
            # A stream's own error answer; the EndBody it sends next ends the message.
            await self._send_envelope(self._stream_error(), end=False)
            self._close_after_answer = True
        else:
            await super().stream_send(event)
            if isinstance(event, EndBody) and self._close_after_answer:
                await self.send(Closed())  # WSStream's 400 for a bad handshake does not

    def _stream_error(self) -> errors.WrapperError:
        if isinstance(self.stream, WSStream):  # our app accepts no WebSocket
            return errors.MalformedRequest(
                "WebSocket is not supported; send plain HTTP requests.",
                code="websocket_not_supported",
            )
        return errors.InternalError("Internal server error.")

    async def _send_envelope(self, error: errors.WrapperError, *, end: bool) -> None:
        headers, body = error_response(error)
        events: list[H11SendableEvent] = [
            h11.Response(
                status_code=error.status, headers=headers + self.config.response_headers("h11")
            ),
            h11.Data(data=body),
        ]
        if end:
            events.append(h11.EndOfMessage())
        try:
            # All in one go: the app's own answer, racing this one, cannot come in between
            # and leave a head without its body.
            data = b"".join(self.connection.send(event) or b"" for event in events)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return  # the app's answer came first; it stands
        await self.send(RawData(data=data))


class TCPServer(hypercorn.trio.tcp_server.TCPServer):
    """hypercorn's connection: one writer at a time, closed in stages, idle timer kept,
    open connections capped (fixes 1, 2, 3 and 5)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set by the protocol's close: what still arrives is read and discarded.
        self._discarding = False
        # Set by the half-close: until when the discarding goes on.
        self._linger_until: float | None = None
        # The reader's current wait, which the close shortens to the linger's end.
        self._reading = trio.CancelScope()

    async def run(self) -> None:
        connections = self.config.connections if isinstance(self.config, HypercornConfig) else None
        if connections is None:
            await super().run()
        elif connections.open >= connections.limit:
            await self._refuse(connections.limit)
        else:
            connections.open += 1
            try:
                await super().run()
            finally:
                connections.open -= 1

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Closed):
            self._discarding = True
            if self._answering():
                return  # hypercorn sends Closed again once that answer is complete
            # Shielded, as below: sent from inside the app's task, whose cancel scope (the
            # disconnect watcher's) must not cut connection state half-way.
            with trio.CancelScope(shield=True):
                await self._half_close()
            await self.protocol.handle(Closed())
        elif isinstance(event, Updated):
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)
        else:
            await super().protocol_send(event)

    def _socket(self) -> trio.SocketStream:
        # hypercorn_config() sets no certificate: TLS, if any, ends at a proxy in front.
        assert isinstance(self.stream, trio.SocketStream)
        return self.stream

    def _answering(self) -> bool:
        """The app's answer is under way: the request was whole, the bytes after it are not
        (an HTTP/1.0 POST with no Content-Length). It ends before the connection closes."""
        protocol = self.protocol.protocol
        return (
            isinstance(protocol, H11Protocol)
            and protocol.stream is not None
            and protocol.connection.our_state is h11.SEND_BODY
        )

    async def _half_close(self) -> None:
        """Stop sending (the client sees the whole answer, then EOF); start the linger."""
        if self._linger_until is not None:
            return
        self._linger_until = trio.current_time() + LINGER
        self._reading.deadline = min(self._reading.deadline, self._linger_until)
        await self.idle_task.stop()
        async with self.send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._socket().send_eof()

    async def _read_data(self) -> None:
        """hypercorn's reader, which after the protocol's close discards what still arrives."""
        while True:
            wait = self.config.read_timeout or math.inf
            deadline = self._linger_until or trio.current_time() + wait
            with trio.CancelScope(deadline=deadline) as self._reading:
                try:
                    data = bytes(await self.stream.receive_some(hypercorn.trio.tcp_server.MAX_RECV))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
            if self._reading.cancelled_caught:
                break
            if not self._discarding:
                await self.protocol.handle(RawData(data))
            if not data:
                break
        # Nothing more can arrive: the idle timer would only hold the connection (and its
        # file descriptor) open until it fires.
        await self.idle_task.stop()
        await self.protocol.handle(Closed())

    async def _refuse(self, limit: int) -> None:
        """A 503 envelope for a connection past the cap, then a close in stages."""
        busy = errors.ServerBusy(
            f"The server has {limit} connections open, its limit; retry shortly.",
            code="too_many_connections",
            retry_after=errors.CONNECTIONS_RETRY_AFTER,
        )
        headers, body = error_response(busy)
        head = b"HTTP/1.1 503 Service Unavailable\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        stream = self._socket()
        with (
            trio.move_on_after(LINGER),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(head + b"\r\n" + body)
            await stream.send_eof()
            while await stream.receive_some(hypercorn.trio.tcp_server.MAX_RECV):
                pass
        await stream.aclose()
