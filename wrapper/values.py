"""Settings as text -> values: the ``.env`` file's lines, and each kind of value a flag,
an environment variable or a ``.env`` line can hold (milliseconds, bounded numbers, flags,
lists, host names, tool names, key files), each refused with a ``ConfigError`` that names
the setting. Pure but for reading the two files named (``.env``, ``API_KEYS_FILE``);
wrapper.config puts them together into the ``Config``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wrapper.builtin import KNOWN
from wrapper.guard import NAME_RE


class ConfigError(Exception):
    """Raised when a flag, environment variable or .env line has an unusable value."""


def read_dotenv(path: Path) -> dict[str, str]:
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


def timeout_seconds(raw: str) -> float:
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


def number(name: str, raw: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def choice(name: str, raw: str, options: tuple[str, ...]) -> str:
    """One of ``options``, in any case (``Off``, ``acceptedits``), spelt as the option."""
    for option in options:
        if raw.lower() == option.lower():
            return option
    expected = ", ".join(options[:-1]) + f" or {options[-1]}"
    raise ConfigError(f"{name}={raw!r}: expected {expected}")


def as_list(raw: str) -> tuple[str, ...]:
    """Comma-separated, or a JSON-style list as the seed's CORS_ORIGINS=["*"]."""
    raw = raw.strip().removeprefix("[").removesuffix("]")
    return tuple(item.strip().strip("'\"") for item in raw.split(",") if item.strip())


def hosts(raw: str) -> tuple[str, ...]:
    """``ALLOWED_HOSTS``: host names, ``.domain`` for a domain and its subdomains, or ``*``."""
    hosts = tuple(h.lower().removesuffix(".") for h in as_list(raw))
    for host in hosts:
        if host != "*" and not NAME_RE.fullmatch(host.removeprefix(".")):
            raise ConfigError(
                f"ALLOWED_HOSTS: {host!r} is not a host name, '.domain' or '*' (no scheme or port)"
            )
    return hosts


def tools(raw: str) -> tuple[str, ...]:
    """``CLAUDE_TOOLS_ALLOWED``: known tool names; ``none`` (or an empty list) for none."""
    names = () if raw.strip().lower() == "none" else as_list(raw)
    if unknown := [n for n in names if n not in KNOWN]:
        raise ConfigError(
            f"CLAUDE_TOOLS_ALLOWED: unknown tool {unknown[0]!r} (known: {', '.join(KNOWN)})"
        )
    return tuple(dict.fromkeys(names))


def state_dir(get: Callable[[str], str | None]) -> Path | None:
    """``WRAPPER_STATE_DIR``; else systemd's ``STATE_DIRECTORY`` (a colon-separated list:
    the first); else ``$XDG_STATE_HOME/claude-wrapper``; None: the default."""
    if (path := get("WRAPPER_STATE_DIR")) is not None:
        return Path(path)
    if (systemd := get("STATE_DIRECTORY")) is not None:
        return Path(systemd.split(":")[0])
    if (xdg := get("XDG_STATE_HOME")) is not None:
        return Path(xdg) / "claude-wrapper"
    return None


def api_keys(get: Callable[[str], str | None]) -> tuple[str, ...]:
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
