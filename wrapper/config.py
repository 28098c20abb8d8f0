"""The one frozen ``Config``, built once from command-line flags, the environment and ``.env``.

Precedence: flag > environment > ``.env`` file > default. Nothing else in the package reads
``os.environ``: modules get what they need from ``Config``. The Claude Code CLI inherits
the server's environment (that is how ``ANTHROPIC_API_KEY``, Bedrock and Vertex settings
reach it); ``claude_env`` adds to it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` lines; ``#`` comments, blank lines and ``export`` are allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _timeout_seconds(raw: str) -> float:
    # The seed documented MAX_TIMEOUT in milliseconds (600000) in one place and in seconds
    # (600) in another; no sane timeout is under a second, so small values mean seconds.
    value = float(raw)
    return value if value < 1000 else value / 1000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wrapper", description="OpenAI-compatible API server for Claude Code."
    )
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="port (as the seed)")
    p.add_argument("--host", help="bind address (HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (PORT, default 8000)")
    p.add_argument("--cli-path", help="Claude Code CLI (CLAUDE_CLI_PATH, default: bundled)")
    p.add_argument("--model", help="default model (DEFAULT_MODEL)")
    p.add_argument("--timeout", help="request timeout (MAX_TIMEOUT, ms or s)")
    p.add_argument("--workdir", help="parent of per-run scratch dirs (CLAUDE_CWD)")
    p.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING... (LOG_LEVEL)")
    return p


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from flags, ``environ`` (default ``os.environ``) and the .env file."""
    args = parser().parse_args(argv)
    process_env = os.environ if environ is None else environ
    dotenv = _read_dotenv(Path(args.env_file))
    env = {**dotenv, **process_env}

    def pick(flag: object, name: str) -> str | None:
        return str(flag) if flag is not None else env.get(name) or None

    kwargs: dict[str, object] = {}
    if (host := pick(args.host, "HOST")) is not None:
        kwargs["host"] = host
    if (port := pick(args.port if args.port is not None else args.port_arg, "PORT")) is not None:
        kwargs["port"] = int(port)
    if (cli := pick(args.cli_path, "CLAUDE_CLI_PATH")) is not None and cli != "claude":
        # "claude" was the seed's default (look it up on PATH); we prefer the pinned bundle.
        kwargs["cli_path"] = cli
    if (model := pick(args.model, "DEFAULT_MODEL")) is not None:
        kwargs["default_model"] = model
    if (models := env.get("MODELS")) is not None:
        kwargs["models"] = tuple(m.strip() for m in models.split(",") if m.strip())
    if (timeout := pick(args.timeout, "MAX_TIMEOUT")) is not None:
        kwargs["timeout"] = _timeout_seconds(timeout)
    if (workdir := pick(args.workdir, "CLAUDE_CWD")) is not None:
        kwargs["workdir"] = Path(workdir)
    if (limit := env.get("MAX_REQUEST_BYTES")) is not None:
        kwargs["max_body_bytes"] = int(limit)
    if (grace := env.get("SHUTDOWN_GRACE")) is not None:
        kwargs["shutdown_grace"] = float(grace)
    if (turns := env.get("MAX_TURNS")) is not None:
        kwargs["max_turns"] = int(turns)
    if (level := pick(args.log_level, "LOG_LEVEL")) is not None:
        kwargs["log_level"] = level.upper()
    # .env settings the process environment does not override reach the CLI too
    # (ANTHROPIC_API_KEY, CLAUDE_CODE_USE_BEDROCK... are commonly kept there).
    kwargs["claude_env"] = {k: v for k, v in dotenv.items() if k not in process_env}
    return Config(**kwargs)  # type: ignore[arg-type]
