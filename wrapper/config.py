"""The one frozen ``Config``, built once from command-line flags, the environment and ``.env``.

Precedence: flag > environment > ``.env`` file > default. Nothing else in the package reads
``os.environ``: modules get what they need from ``Config``. How each setting's text
becomes a value, and the ``.env`` format, are in wrapper.values.

The Claude Code CLI gets only what it needs (``claude_environment``): the variables of
``CLI_ENV_NAMES`` and ``CLI_ENV_PREFIXES`` (Claude Code's own, the Anthropic API's,
Bedrock's, Vertex's, proxies, certificates, locale), from the server's environment and
``.env``. The server's own settings (``API_KEYS``...), unrelated ``.env`` entries and
systemd's variables never reach it; ``python -m wrapper`` even drops them from its own
environment once the Config is built, since the SDK passes the server's environment on.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from wrapper import values
from wrapper.builtin import DEFAULT_ALLOWED
from wrapper.values import ConfigError as ConfigError  # raised by load(), caught by callers

# Current Claude models and the CLI's aliases; the CLI passes any other id through as-is.
DEFAULT_MODELS = (
    "claude-sonnet-4-5",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "sonnet",
    "opus",
    "haiku",
)


# Modes in which the gate of wrapper.claude still decides: bypassPermissions would skip it
# (and is refused as root), plan would run nothing.
PERMISSION_MODES = ("default", "acceptEdits")
# wrapper.sandbox: when bubblewrap works, always, never.
SANDBOX_MODES = ("auto", "bwrap", "off")
# Lines for people, or JSON lines for log shippers (wrapper.logs).
LOG_FORMATS = ("plain", "json")

# What the CLI may inherit (wrapper.places sets HOME and CLAUDE_CONFIG_DIR per run).
CLI_ENV_NAMES = frozenset(
    {
        "PATH", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
        "CLOUD_ML_REGION", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
        "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER", "DISABLE_ERROR_REPORTING",
        "DISABLE_COST_WARNINGS", "DISABLE_PROMPT_CACHING", "MAX_THINKING_TOKENS",
        "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS", "MCP_TIMEOUT", "MCP_TOOL_TIMEOUT",
        "IS_SANDBOX",
    }
)  # fmt: skip
CLI_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "AWS_", "VERTEX_REGION_", "LC_")


def cli_variable(name: str) -> bool:
    """Whether the CLI may inherit the environment variable ``name``."""
    return name in CLI_ENV_NAMES or name.startswith(CLI_ENV_PREFIXES)


# Requests per minute and burst per route class: the first four as the seed documented.
DEFAULT_RATE_LIMITS = {
    "chat": (10.0, 10.0),
    "debug": (2.0, 2.0),
    "auth": (10.0, 10.0),
    "health": (30.0, 30.0),
    # Read-only routes (models, tools, sessions, metrics): 2/s sustained is a dashboard
    # polling every second with room to spare, and stops a tight loop (thousands/s).
    "read": (120.0, 120.0),
    # Wrong API keys per address (not requests): 10 slips (a stale key, retries), then one
    # guess a minute, 1,440 a day; fail2ban's default (5 per 10 min) is of that order.
    "auth_failure": (1.0, 10.0),
}


def _rate_limits(limits: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Every route class has a limit: the classes ``limits`` leaves out keep the defaults."""
    return {**DEFAULT_RATE_LIMITS, **limits}


@attrs.frozen(kw_only=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    # None: the CLI bundled in the claude-agent-sdk wheel (pinned with the SDK).
    cli_path: str | None = None
    default_model: str = "claude-sonnet-4-5"
    models: tuple[str, ...] = DEFAULT_MODELS
    # Where the session table lives and, by default, the workdir (both survive restarts).
    state_dir: Path = attrs.field(
        factory=lambda: Path.home() / ".local" / "state" / "claude-wrapper"
    )
    # Whole-request budget for one Claude Code run; the seed's MAX_TIMEOUT default.
    timeout: float = 600.0
    # Private (0700) parent of every place a run works in (wrapper.places): a fresh one per
    # stateless run, removed afterwards; one per session and continuation chain. Never in a
    # shared /tmp by default: the state directory's ``work``.
    workdir: Path = attrs.field(
        default=attrs.Factory(lambda self: self.state_dir / "work", takes_self=True)
    )
    # 10 MiB: room for long conversations; far above what a chat turn needs.
    max_body_bytes: int = 10 * 1024 * 1024
    # Under the 30-60 s idle timeouts of common proxies and load balancers.
    keepalive_interval: float = 15.0
    # How long in-flight requests may finish after SIGTERM/SIGINT before they are cut.
    shutdown_grace: float = 10.0
    # Claude Code's tools a request with enable_tools may have (wrapper.builtin).
    tools_allowed: tuple[str, ...] = DEFAULT_ALLOWED
    # How the CLI starts asking; the run's gate answers what it asks (see wrapper.builtin).
    permission_mode: str = "default"
    # Turns per run; with tools off a run is one turn, the cap matters once tools are on.
    max_turns: int = 10
    log_level: str = "INFO"
    # Environment for the CLI on top of the server's own (.env entries); both are filtered
    # by ``cli_variable``.
    claude_env: Mapping[str, str] = attrs.field(factory=dict)
    # Bubblewrap around each CLI process (wrapper.sandbox): auto (when it works), bwrap, off.
    sandbox: str = "auto"
    # Client keys; empty: no key protection (the interactive prompt may add one).
    api_keys: tuple[str, ...] = ()
    rate_limit_enabled: bool = True
    # Route class -> (requests per minute, burst). The seed's defaults.
    rate_limits: Mapping[str, tuple[float, float]] = attrs.field(
        factory=lambda: dict(DEFAULT_RATE_LIMITS), converter=_rate_limits
    )
    # Peers whose X-Forwarded-For is believed (a reverse proxy on the same host, say).
    trusted_proxies: tuple[str, ...] = ()
    # Each CLI process takes 200-300 MB and mostly waits on the network: 4 fit a 2-core,
    # 2 GB machine. Requests beyond wait in a queue of bounded length, then get 503.
    max_concurrent_runs: int = 4
    max_queued_runs: int = 16
    # Host names answered besides addresses, localhost and HOST (wrapper.guard): a name
    # ("api.example.com"), a domain and its subdomains (".example.com"), or "*" for any.
    allowed_hosts: tuple[str, ...] = ()

    # Runs one client (API key, else address) may have running or queued. The default
    # slot count: alone, a client can still use every CLI process, but it holds at most a
    # fifth of the 20 default places, so four other clients always find room.
    max_runs_per_client: int = 4
    # Origins allowed by CORS; empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    # POST /v1/debug/request exists only when this is on.
    debug_mode: bool = False
    # Slow clients: seconds to send a whole request body (408 past it), and to send the
    # request headers or the next request on a kept-alive connection (then closed).
    read_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    # Request line plus headers; h11's default, as large as any sane client needs.
    max_header_bytes: int = 16 * 1024
    # Open connections at once (more get a 503 and are closed): nginx's worker_connections
    # default, half the usual 1,024 file descriptors, leaving the rest for CLI pipes and files.
    max_connections: int = 512
    # /metrics without an API key (for a scraper on a private network).
    metrics_public: bool = False
    # "plain" lines for people, "json" lines for log shippers.
    log_format: str = "plain"
    # systemd's notification socket (Type=notify); set by systemd, not by hand.
    notify_socket: str | None = None
    # Seconds a session may stay idle before the reaper removes it and its files.
    session_ttl: float = 3600.0
    # Sessions kept at once: each is a row, a directory and a transcript (KBs to MBs), so
    # 10,000 (the rate limiter's client table bound) is about 1 GB at 100 KB a session.
    max_sessions: int = 10_000
    # Sessions one API key may keep: a tenth of the total, so one key cannot take the
    # room of all (without keys, the one tenant has only the total).
    max_sessions_per_key: int = 1_000
    # Resume the Claude session of a stateless conversation this server answered before.
    session_auto_continue: bool = True
    # Send Claude's thinking to clients as ``reasoning_content`` (never inside ``content``).
    show_reasoning: bool = True

    def claude_environment(self) -> dict[str, str]:
        """The environment every CLI process starts from: the allowed variables of the
        server's environment and ``claude_env``."""
        return {k: v for k, v in {**os.environ, **self.claude_env}.items() if cli_variable(k)}

    def home(self) -> Path:
        """The server's own home (its ``claude`` login lives there, out of runs' reach)."""
        return Path({**os.environ, **self.claude_env}.get("HOME") or Path.home())

    def claude_config_dir(self) -> Path:
        """Where the server's ``claude`` login is kept (CLAUDE_CONFIG_DIR or ~/.claude)."""
        env = {**os.environ, **self.claude_env}
        if env.get("CLAUDE_CONFIG_DIR"):
            return Path(env["CLAUDE_CONFIG_DIR"])
        return self.home() / ".claude"


# Numeric settings: environment name, Config field, type, and the range that makes sense.
NUMBERS: tuple[tuple[str, str, type[int] | type[float], float, float], ...] = (
    ("PORT", "port", int, 0, 65535),
    ("MAX_REQUEST_BYTES", "max_body_bytes", int, 1024, 2**31),
    ("SHUTDOWN_GRACE", "shutdown_grace", float, 0, 3600),
    ("MAX_TURNS", "max_turns", int, 1, 1000),
    ("MAX_CONCURRENT_RUNS", "max_concurrent_runs", int, 1, 1000),
    ("MAX_QUEUED_RUNS", "max_queued_runs", int, 0, 100_000),
    ("MAX_RUNS_PER_CLIENT", "max_runs_per_client", int, 1, 100_000),
    ("READ_TIMEOUT", "read_timeout", float, 0.1, 3600),
    ("KEEP_ALIVE_TIMEOUT", "keep_alive_timeout", float, 0.1, 3600),
    ("MAX_HEADER_BYTES", "max_header_bytes", int, 1024, 1 << 20),
    ("MAX_CONNECTIONS", "max_connections", int, 1, 1_000_000),
    ("SESSION_TTL", "session_ttl", float, 1, 10**8),
    ("MAX_SESSIONS", "max_sessions", int, 1, 10**7),
    ("MAX_SESSIONS_PER_KEY", "max_sessions_per_key", int, 1, 10**7),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wrapper", description="OpenAI-compatible API server for Claude Code."
    )
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="port (as the seed)")
    p.add_argument("--host", help="bind address (HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (PORT, default 8000)")
    p.add_argument("--cli-path", help="Claude Code CLI (CLAUDE_CLI_PATH, default: bundled)")
    p.add_argument("--model", help="default model (DEFAULT_MODEL)")
    p.add_argument("--timeout", help="request timeout (MAX_TIMEOUT: ms, or 600s / 10m)")
    p.add_argument("--workdir", help="parent of per-run scratch dirs (CLAUDE_CWD)")
    p.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING... (LOG_LEVEL)")
    p.add_argument("--generate-key", action="store_true", help="print a fresh API key and exit")
    return p


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from flags, ``environ`` (default ``os.environ``) and the .env file.

    An empty value means unset. A bad value raises ``ConfigError`` naming the setting.
    """
    args = parser().parse_args(argv)
    process_env = os.environ if environ is None else environ
    dotenv = values.read_dotenv(Path(args.env_file))
    env = {**dotenv, **process_env}
    flags = {
        "HOST": args.host,
        "PORT": args.port if args.port is not None else args.port_arg,
        "CLAUDE_CLI_PATH": args.cli_path,
        "DEFAULT_MODEL": args.model,
        "MAX_TIMEOUT": args.timeout,
        "CLAUDE_CWD": args.workdir,
        "LOG_LEVEL": args.log_level,
    }

    def get(name: str) -> str | None:
        flag = flags.get(name)
        value = str(flag) if flag is not None else env.get(name)
        return value.strip() or None if value is not None else None

    kwargs: dict[str, Any] = {
        field: values.number(name, raw, kind, low, high)
        for name, field, kind, low, high in NUMBERS
        if (raw := get(name)) is not None
    }
    if (host := get("HOST")) is not None:
        kwargs["host"] = host
    if (cli := get("CLAUDE_CLI_PATH")) is not None and cli != "claude":
        # "claude" was the seed's default (look it up on PATH); we prefer the pinned bundle.
        kwargs["cli_path"] = cli
    if (model := get("DEFAULT_MODEL")) is not None:
        kwargs["default_model"] = model
    if (models := get("MODELS")) is not None:
        kwargs["models"] = tuple(m.strip() for m in models.split(",") if m.strip())
    if (timeout := get("MAX_TIMEOUT")) is not None:
        kwargs["timeout"] = values.timeout_seconds(timeout)
    if (workdir := get("CLAUDE_CWD")) is not None:
        kwargs["workdir"] = Path(workdir)
    if (allowed := get("CLAUDE_TOOLS_ALLOWED")) is not None:
        kwargs["tools_allowed"] = values.tools(allowed)
    if (sandbox := get("SANDBOX")) is not None:
        kwargs["sandbox"] = values.choice("SANDBOX", sandbox, SANDBOX_MODES)
    if (mode := get("CLAUDE_PERMISSION_MODE")) is not None:
        kwargs["permission_mode"] = values.choice("CLAUDE_PERMISSION_MODE", mode, PERMISSION_MODES)
    if (level := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = level.upper()
    kwargs["api_keys"] = values.api_keys(get)
    if (enabled := get("RATE_LIMIT_ENABLED")) is not None:
        kwargs["rate_limit_enabled"] = values.flag("RATE_LIMIT_ENABLED", enabled)
    limits = dict(DEFAULT_RATE_LIMITS)
    for route_class, (per_minute, burst) in DEFAULT_RATE_LIMITS.items():
        name = f"RATE_LIMIT_{route_class.upper()}"
        if (raw := get(f"{name}_PER_MINUTE")) is not None:
            per_minute = burst = values.number(f"{name}_PER_MINUTE", raw, float, 0.01, 1e6)
        if (raw := get(f"{name}_BURST")) is not None:
            burst = values.number(f"{name}_BURST", raw, float, 1, 1e6)
        limits[route_class] = (per_minute, burst)
    kwargs["rate_limits"] = limits
    if (proxies := get("TRUSTED_PROXIES")) is not None:
        kwargs["trusted_proxies"] = values.as_list(proxies)
    if (hosts := get("ALLOWED_HOSTS")) is not None:
        kwargs["allowed_hosts"] = values.hosts(hosts)
    if (origins := get("CORS_ORIGINS")) is not None:
        kwargs["cors_origins"] = values.as_list(origins)
    if (debug := get("DEBUG_MODE")) is not None:
        kwargs["debug_mode"] = values.flag("DEBUG_MODE", debug)
    if (public := get("METRICS_PUBLIC")) is not None:
        kwargs["metrics_public"] = values.flag("METRICS_PUBLIC", public)
    if (fmt := get("LOG_FORMAT")) is not None:
        kwargs["log_format"] = values.choice("LOG_FORMAT", fmt, LOG_FORMATS)
    kwargs["notify_socket"] = process_env.get("NOTIFY_SOCKET") or None
    if (auto := get("SESSION_AUTO_CONTINUE")) is not None:
        kwargs["session_auto_continue"] = values.flag("SESSION_AUTO_CONTINUE", auto)
    if (shown := get("SHOW_REASONING")) is not None:
        kwargs["show_reasoning"] = values.flag("SHOW_REASONING", shown)
    if (state := values.state_dir(get)) is not None:
        kwargs["state_dir"] = state
    # .env settings the process environment does not override reach the CLI too
    # (ANTHROPIC_API_KEY, CLAUDE_CODE_USE_BEDROCK... are commonly kept there), when allowed.
    # HOME is kept for claude_config_dir (the login); runs get a HOME of their own.
    kwargs["claude_env"] = {
        k: v
        for k, v in dotenv.items()
        if k not in process_env and (cli_variable(k) or k in ("HOME", "CLAUDE_CONFIG_DIR"))
    }
    return Config(**kwargs)
