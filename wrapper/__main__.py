"""``python -m wrapper``: parse flags, build the Config, ask about key protection, serve.

With no API key configured and a terminal on stdin, it asks once whether to protect the
endpoint (as the seed did) and, on yes, prints a fresh key once. It never asks when stdin
is not a terminal (systemd, Docker, CI). Binding a non-loopback address with no key is
allowed, since a reverse proxy may do the authentication, but it is logged loudly.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import attrs
import trio

from wrapper import config as config_module
from wrapper import logs
from wrapper.config import Config
from wrapper.places import UnsafeDirectory
from wrapper.sandbox import SandboxUnavailable
from wrapper.server import PortInUse, serve

log = logging.getLogger("wrapper")


def new_key() -> str:
    return secrets.token_urlsafe(32)


def offer_key_protection(config: Config, stdin: TextIO, stdout: TextIO) -> Config:
    """The seed's interactive question; returns the config with the new key, if any."""
    if config.api_keys or not stdin.isatty():
        return config
    stdout.write(
        "No API key is configured: anyone who can reach this server can use your Claude\n"
        "account through it.\nEnable API key protection? (y/N): "
    )
    stdout.flush()
    if stdin.readline().strip().lower() not in ("y", "yes"):
        return config
    key = new_key()
    host = "localhost" if config.host in ("127.0.0.1", "::1") else config.host
    stdout.write(
        f"\nAPI key (shown once, keep it): {key}\n\nExample:\n"
        f'  curl -H "Authorization: Bearer {key}" http://{host}:{config.port}/v1/models\n\n'
    )
    stdout.flush()
    return attrs.evolve(config, api_keys=(key,))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = config_module.parser().parse_args(argv)
    if args.generate_key:
        print(new_key())
        return 0
    try:
        config = config_module.load(argv)
    except config_module.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level, config.log_format)
    os.umask(0o077)  # every file and directory the server or its CLIs make is private
    # The SDK hands the server's whole environment to each CLI: keep only what it may see
    # (HOME and CLAUDE_CONFIG_DIR locate the login; each run gets its own).
    for name in list(os.environ):
        if not (config_module.cli_variable(name) or name in ("HOME", "CLAUDE_CONFIG_DIR")):
            del os.environ[name]
    config = offer_key_protection(config, sys.stdin, sys.stdout)
    if not config.api_keys and not is_loopback(config.host):
        log.warning(
            "listening on %s with NO API key: anyone who can reach this port can run"
            " Claude Code on your account. Set API_KEY (or API_KEYS / API_KEYS_FILE).",
            config.host,
        )
    try:
        trio.run(partial(serve, config, handle_signals=True))
    except PortInUse as exc:
        print(f"error: {exc}; set PORT or pass --port", file=sys.stderr)
        return 1
    except (UnsafeDirectory, SandboxUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
