"""``python -m wrapper``: parse flags, build the Config, serve until stopped."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from functools import partial

import trio

from wrapper import config as config_module
from wrapper.server import PortInUse, serve


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_module.load(argv)
    except config_module.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        trio.run(partial(serve, config, handle_signals=True))
    except PortInUse as exc:
        print(f"error: {exc}; set PORT or pass --port", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
