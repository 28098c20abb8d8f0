"""The one frozen ``Config``, built once from command-line flags, the environment and ``.env``.

Precedence: flag > environment > ``.env`` file > default. Nothing else in the package reads
``os.environ``: modules get what they need from ``Config``. The Claude Code CLI inherits
the server's environment (that is how ``ANTHROPIC_API_KEY``, Bedrock and Vertex settings
reach it); ``claude_env`` adds to it.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

# Current Claude models and the CLI's aliases; the CLI passes any other id through as-is.
DEFAULT_MODELS = (
    "claude-sonnet-4-5",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "sonnet",
    "opus",
    "haiku",
)


@attrs.frozen(kw_only=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    # None: the CLI bundled in the claude-agent-sdk wheel (pinned with the SDK).
    cli_path: str | None = None
    default_model: str = "claude-sonnet-4-5"
    models: tuple[str, ...] = DEFAULT_MODELS
    # Whole-request budget for one Claude Code run; the seed's MAX_TIMEOUT default.
    timeout: float = 600.0
    # Each run gets a fresh scratch directory below this one, removed afterwards.
    workdir: Path = attrs.field(factory=lambda: Path(tempfile.gettempdir()) / "claude-wrapper")
    # 10 MiB: room for long conversations; far above what a chat turn needs.
    max_body_bytes: int = 10 * 1024 * 1024
    # Under the 30-60 s idle timeouts of common proxies and load balancers.
    keepalive_interval: float = 15.0
    # How long in-flight requests may finish after SIGTERM/SIGINT before they are cut.
    shutdown_grace: float = 10.0
    # Turns per run; with tools off a run is one turn, the cap matters once tools are on.
    max_turns: int = 10
    log_level: str = "INFO"
    # Extra environment for the CLI, on top of the server's own.
    claude_env: Mapping[str, str] = attrs.field(factory=dict)

    def claude_config_dir(self) -> Path:
        """Where the CLI keeps its state and transcripts, given the environment it gets."""
        env = {**os.environ, **self.claude_env}
        if env.get("CLAUDE_CONFIG_DIR"):
            return Path(env["CLAUDE_CONFIG_DIR"])
        return Path(env.get("HOME") or Path.home()) / ".claude"


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

    kwargs: dict[str, Any] = {}
    if (host := get("HOST")) is not None:
        kwargs["host"] = host
    if (port := get("PORT")) is not None:
        kwargs["port"] = _number("PORT", port, int, 0, 65535)
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
    if (limit := get("MAX_REQUEST_BYTES")) is not None:
        kwargs["max_body_bytes"] = _number("MAX_REQUEST_BYTES", limit, int, 1024, 2**31)
    if (grace := get("SHUTDOWN_GRACE")) is not None:
        kwargs["shutdown_grace"] = _number("SHUTDOWN_GRACE", grace, float, 0, 3600)
    if (turns := get("MAX_TURNS")) is not None:
        kwargs["max_turns"] = _number("MAX_TURNS", turns, int, 1, 1000)
    if (level := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = level.upper()
    # .env settings the process environment does not override reach the CLI too
    # (ANTHROPIC_API_KEY, CLAUDE_CODE_USE_BEDROCK... are commonly kept there).
    kwargs["claude_env"] = {k: v for k, v in dotenv.items() if k not in process_env}
    return Config(**kwargs)
