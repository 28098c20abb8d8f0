"""Serving: hypercorn's trio worker, signals, and graceful stop.

Under systemd (``Type=notify``) it reports ``READY=1`` once it accepts connections and
``STOPPING=1`` when it starts to drain, over ``NOTIFY_SOCKET`` with a plain datagram.

Stop sequence (SIGINT or SIGTERM, or ``shutdown`` set by an embedding caller):
1. the app starts draining: new requests get 503, runs in flight get ``shutdown_grace``
   seconds, after which each ends with a clean error (an error frame when streaming);
2. hypercorn stops accepting, closes idle keep-alive connections at once, and waits for
   open requests, at most ``shutdown_grace`` plus ``CANCEL_MARGIN`` seconds, then cancels
   what is left. Every run closes its CLI process in a shielded, bounded ``finally``, so
   none outlives ``serve``.

hypercorn runs with the fixes of ``wrapper.hypercorn_fixes`` installed: no malformed request
can end the process, idle connections close after ``keep_alive_timeout``, its own error
answers are envelopes, and at most ``max_connections`` connections are open at once.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket

import trio
from hypercorn.trio import serve as hypercorn_serve

from wrapper import hypercorn_fixes, places, sandbox
from wrapper.app import App, Router
from wrapper.claude.backend import Backend
from wrapper.config import Config
from wrapper.drain import Drain
from wrapper.handlers import routes
from wrapper.hypercorn_fixes import HypercornConfig
from wrapper.limits import RateLimiter, RunGate
from wrapper.metrics import Metrics
from wrapper.placement import Placement
from wrapper.points import Points
from wrapper.sessions import Sessions

log = logging.getLogger(__name__)

# Time for runs cut at the grace deadline to send their error frame and close their CLI
# (interrupt + close measured at ~0.1 s; 5 s covers a slow machine).
CANCEL_MARGIN = 5.0


class PortInUse(Exception):
    """Raised when the configured address is already taken by another process."""


def build_app(config: Config) -> App:
    """Every service, built once and handed to what uses it; first the private
    directories and the CLI's launcher. Raises ``UnsafeDirectory`` or
    ``SandboxUnavailable`` (one line for the operator)."""
    places.check_private(config.state_dir)
    places.check_private(config.workdir)
    hidden = [config.workdir, config.state_dir, config.home(), config.claude_config_dir()]
    launcher, sandboxed = sandbox.install(config.sandbox, config.cli_path, config.state_dir, hidden)
    log.info("Claude Code runs %s", "in a bubblewrap sandbox" if sandboxed else "unsandboxed")
    backend = Backend(config, launcher, sandboxed)
    points = Points(config.state_dir)
    sessions = Sessions(config, points)
    placement = Placement(config, points, sessions)
    gate = RunGate(config.max_concurrent_runs, config.max_queued_runs, config.max_runs_per_client)
    limiter = RateLimiter(dict(config.rate_limits))
    drain = Drain(config.shutdown_grace)
    metrics = Metrics(
        gauges={
            "wrapper_active_runs": ("Claude Code runs in flight.", lambda: gate.running),
            "wrapper_queued_runs": ("Requests waiting for a run slot.", lambda: gate.waiting),
            "wrapper_cli_processes": (
                "Live Claude Code CLI processes.",
                lambda: backend.live_processes,
            ),
            "wrapper_sessions": ("Sessions kept by the server.", lambda: sessions.count),
        }
    )
    table = routes(
        config,
        backend=backend,
        placement=placement,
        kept=sessions,
        gate=gate,
        drain=drain,
        metrics=metrics,
    )
    tasks = (limiter.sweeper, sessions.reaper)
    return App(config, Router(table), limiter, drain, metrics, tasks)


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig(config.max_connections)
    hc.bind = [
        f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    ]
    hc.graceful_timeout = config.shutdown_grace + CANCEL_MARGIN
    hc.keep_alive_timeout = config.keep_alive_timeout
    hc.h11_max_incomplete_size = config.max_header_bytes
    hc.accesslog = None  # the app logs one line per request itself
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


async def serve(
    config: Config,
    *,
    shutdown: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set (or a signal arrives); report the bound URLs."""
    app = build_app(config)
    stop = shutdown if shutdown is not None else trio.Event()

    async def trigger() -> None:
        await stop.wait()
        notify(config.notify_socket, "STOPPING=1")
        app.begin_shutdown()

    try:
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_wait_for_signal, stop)
            for task in app.tasks:
                await nursery.start(task)
            hypercorn_fixes.install()
            hc = hypercorn_config(config)
            binds = await nursery.start(_serve_app, app, hc, trigger, nursery.cancel_scope)
            log.info("listening on %s", ", ".join(binds))
            notify(config.notify_socket, f"READY=1\nSTATUS=listening on {', '.join(binds)}")
            task_status.started(binds)
    except* OSError as group:
        # hypercorn's own nurseries nest the error: subgroup() searches the whole tree.
        if group.subgroup(lambda e: isinstance(e, OSError) and e.errno == errno.EADDRINUSE):
            raise PortInUse(f"port {config.port} on {config.host} is already in use") from None
        raise


async def _serve_app(
    app: App,
    hc: HypercornConfig,
    trigger: object,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """hypercorn until it has drained; then the signal watcher, sweeper and reaper go too."""
    await hypercorn_serve(app, hc, shutdown_trigger=trigger, task_status=task_status)  # type: ignore[arg-type]
    done.cancel()


def notify(address: str | None, message: str) -> None:
    """sd_notify without a dependency: one datagram to systemd's socket, if there is one."""
    if not address:
        return
    # A leading "@" names a socket in Linux's abstract namespace.
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), target)
    except OSError as exc:
        log.warning("could not notify systemd at %s: %s", address, exc.strerror)


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
            return
