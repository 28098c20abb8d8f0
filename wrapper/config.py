"""The one frozen ``Config``, built once from command-line flags, the environment and ``.env``.

Precedence: flag > environment > ``.env`` file > default. Nothing else in the package reads
``os.environ``: modules get what they need from ``Config``.

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
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from wrapper.builtin import DEFAULT_ALLOWED, KNOWN
from wrapper.guard import NAME_RE

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


class ConfigError(Exception):
    """Raised when a flag, environment variable or .env line has an unusable value."""


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` lines: ``#`` comments (whole-line, or after an unquoted value),
    blank lines, ``export KEY=value`` and single or double quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export").strip() if key.startswith("export") else key.strip()
        value = value.strip()
        if value[:1] in ("'", '"') and value[0] in value[1:]:
            value = value[1 : value.index(value[0], 1)]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


_TIMEOUT_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def _timeout_seconds(raw: str) -> float:
    """``MAX_TIMEOUT``: bare numbers are milliseconds, as in the seed's .env (600000).

    The seed's Docker notes said seconds (600) instead; rather than guess, a bare value
    under one second is refused with a hint. ``600s``, ``10m``, ``600000ms`` are explicit.
    """
    match = _TIMEOUT_RE.fullmatch(raw.strip())
    if match is None:
        raise ConfigError(f"MAX_TIMEOUT={raw!r}: expected milliseconds, or a number with s/m/ms")
    number, unit = float(match[1]), match[2]
    if unit is None and number < 1000:
        raise ConfigError(
            f"MAX_TIMEOUT={raw!r} is in milliseconds ({number / 1000:g} s);"
            f" write {raw}s for seconds or {int(number * 1000)} for milliseconds"
        )
    seconds = number * _UNITS[unit or "ms"]
    if seconds <= 0:
        raise ConfigError(f"MAX_TIMEOUT={raw!r} must be positive")
    return seconds


def _number(name: str, raw: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def _flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _list(raw: str) -> tuple[str, ...]:
    """Comma-separated, or a JSON-style list as the seed's CORS_ORIGINS=["*"]."""
    raw = raw.strip().removeprefix("[").removesuffix("]")
    return tuple(item.strip().strip("'\"") for item in raw.split(",") if item.strip())


def _hosts(raw: str) -> tuple[str, ...]:
    """``ALLOWED_HOSTS``: host names, ``.domain`` for a domain and its subdomains, or ``*``."""
    hosts = tuple(h.lower().removesuffix(".") for h in _list(raw))
    for host in hosts:
        if host != "*" and not NAME_RE.fullmatch(host.removeprefix(".")):
            raise ConfigError(
                f"ALLOWED_HOSTS: {host!r} is not a host name, '.domain' or '*' (no scheme or port)"
            )
    return hosts


def _tools(raw: str) -> tuple[str, ...]:
    """``CLAUDE_TOOLS_ALLOWED``: known tool names; ``none`` (or an empty list) for none."""
    names = () if raw.strip().lower() == "none" else _list(raw)
    if unknown := [n for n in names if n not in KNOWN]:
        raise ConfigError(
            f"CLAUDE_TOOLS_ALLOWED: unknown tool {unknown[0]!r} (known: {', '.join(KNOWN)})"
        )
    return tuple(dict.fromkeys(names))


def _state_dir(get: Callable[[str], str | None]) -> Path | None:
    """``WRAPPER_STATE_DIR``; else systemd's ``STATE_DIRECTORY`` (a colon-separated list:
    the first); else ``$XDG_STATE_HOME/claude-wrapper``; None: the default."""
    if (path := get("WRAPPER_STATE_DIR")) is not None:
        return Path(path)
    if (systemd := get("STATE_DIRECTORY")) is not None:
        return Path(systemd.split(":")[0])
    if (xdg := get("XDG_STATE_HOME")) is not None:
        return Path(xdg) / "claude-wrapper"
    return None


def _keys(get: Callable[[str], str | None]) -> tuple[str, ...]:
    keys: list[str] = []
    if (key := get("API_KEY")) is not None:
        keys.append(key)
    if (many := get("API_KEYS")) is not None:
        keys += [k.strip() for k in many.split(",") if k.strip()]
    if (path := get("API_KEYS_FILE")) is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"API_KEYS_FILE={path!r}: {exc.strerror}") from None
        keys += [k.strip() for k in lines if k.strip() and not k.lstrip().startswith("#")]
    return tuple(dict.fromkeys(keys))


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
    dotenv = _read_dotenv(Path(args.env_file))
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
        field: _number(name, raw, kind, low, high)
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
        kwargs["timeout"] = _timeout_seconds(timeout)
    if (workdir := get("CLAUDE_CWD")) is not None:
        kwargs["workdir"] = Path(workdir)
    if (allowed := get("CLAUDE_TOOLS_ALLOWED")) is not None:
        kwargs["tools_allowed"] = _tools(allowed)
    if (sandbox := get("SANDBOX")) is not None:
        if sandbox.lower() not in ("auto", "bwrap", "off"):
            raise ConfigError(f"SANDBOX={sandbox!r}: expected auto, bwrap or off")
        kwargs["sandbox"] = sandbox.lower()
    if (mode := get("CLAUDE_PERMISSION_MODE")) is not None:
        if mode not in PERMISSION_MODES:
            raise ConfigError(
                f"CLAUDE_PERMISSION_MODE={mode!r}: expected {' or '.join(PERMISSION_MODES)}"
            )
        kwargs["permission_mode"] = mode
    if (level := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = level.upper()
    kwargs["api_keys"] = _keys(get)
    if (enabled := get("RATE_LIMIT_ENABLED")) is not None:
        kwargs["rate_limit_enabled"] = _flag("RATE_LIMIT_ENABLED", enabled)
    limits = dict(DEFAULT_RATE_LIMITS)
    for route_class, (per_minute, burst) in DEFAULT_RATE_LIMITS.items():
        name = f"RATE_LIMIT_{route_class.upper()}"
        if (raw := get(f"{name}_PER_MINUTE")) is not None:
            per_minute = burst = _number(f"{name}_PER_MINUTE", raw, float, 0.01, 1e6)
        if (raw := get(f"{name}_BURST")) is not None:
            burst = _number(f"{name}_BURST", raw, float, 1, 1e6)
        limits[route_class] = (per_minute, burst)
    kwargs["rate_limits"] = limits
    if (proxies := get("TRUSTED_PROXIES")) is not None:
        kwargs["trusted_proxies"] = _list(proxies)
    if (hosts := get("ALLOWED_HOSTS")) is not None:
        kwargs["allowed_hosts"] = _hosts(hosts)
    if (origins := get("CORS_ORIGINS")) is not None:
        kwargs["cors_origins"] = _list(origins)
    if (debug := get("DEBUG_MODE")) is not None:
        kwargs["debug_mode"] = _flag("DEBUG_MODE", debug)
    if (public := get("METRICS_PUBLIC")) is not None:
        kwargs["metrics_public"] = _flag("METRICS_PUBLIC", public)
    if (fmt := get("LOG_FORMAT")) is not None:
        if fmt.lower() not in ("plain", "json"):
            raise ConfigError(f"LOG_FORMAT={fmt!r}: expected plain or json")
        kwargs["log_format"] = fmt.lower()
    kwargs["notify_socket"] = process_env.get("NOTIFY_SOCKET") or None
    if (auto := get("SESSION_AUTO_CONTINUE")) is not None:
        kwargs["session_auto_continue"] = _flag("SESSION_AUTO_CONTINUE", auto)
    if (state := _state_dir(get)) is not None:
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
