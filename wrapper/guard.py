"""What a request must look like before the server does anything for it: its ``Host``, and
the media type of a ``POST`` body. Pure checks on the ASGI scope, which the app makes
before any other work (``wrapper.app``'s order of checks).

Why: a web page may send a cross-site ``POST`` without a CORS preflight only with a
"simple" body (``text/plain``, a form); and a page whose name an attacker rebinds to
127.0.0.1 (DNS rebinding) is same-origin with this server and reads its answers, but its
requests carry the attacker's name in ``Host``. Rules kept here:
- A ``POST`` that has a body declares it ``application/json`` (parameters such as
  ``charset`` allowed, the type case-insensitive), once; anything else is 415. JSON cannot
  be sent cross-site without a preflight, which the server answers only under CORS.
- ``Host`` is answered when it is an IP address literal (a rebinding page has a name, so
  an address in ``Host`` means the client asked for an address), ``localhost`` or a name
  under ``.localhost`` (RFC 6761: loopback, and not delegated in DNS, so no attacker holds
  one), the bound ``HOST``, or a name in ``ALLOWED_HOSTS`` (``*``: any; ``.example.com``:
  that domain and its subdomains). Any port, since proxies and port mappings change it.
  Names are case-insensitive and may end in one dot. Another name is 421 (RFC 9110
  §15.5.20: not an authority this server answers for).
- A ``Host`` that is not a host, or none on HTTP/1.1 and later, is 400 (RFC 9112 §3.2).
  HTTP/1.0 may leave it out: old health probes do, and browsers always send it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from wrapper.errors import HostNotAllowed, InvalidHost, UnsupportedMediaType
from wrapper.http import Scope

# A host name as ALLOWED_HOSTS and Host headers spell it: letters, digits, "-", "_", dots.
NAME_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# RFC 3986's authority without userinfo: a bracketed IPv6 literal or a name/IPv4, a port.
AUTHORITY_RE = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::\d{0,5})?")


def host_name(value: str) -> str | None:
    """The host of a ``Host`` value, lowercased, without port or trailing dot; None if it
    is not one. A bracketed literal must be an IPv6 address."""
    match = AUTHORITY_RE.fullmatch(value.lower())
    if match is None:
        return None
    if match["v6"] is not None:
        return match["v6"] if _is_address(match["v6"], version=6) else None
    name = match["name"]
    return name.removesuffix(".") if NAME_RE.fullmatch(name) else None


def host_allowed(name: str, bound: str, allowed: Iterable[str]) -> bool:
    """Whether a host ``name`` (as ``host_name`` returns it) is one this server answers to."""
    if _is_address(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    if name == bound.lower().removesuffix("."):
        return True
    return any(
        entry == "*"
        or name == entry.removeprefix(".")
        or (entry.startswith(".") and name.endswith(entry))
        for entry in allowed
    )


def check_host(scope: Scope, bound: str, allowed: Iterable[str]) -> None:
    """Raise ``InvalidHost`` (400) or ``HostNotAllowed`` (421) unless ``Host`` is served."""
    values = _values(scope, b"host")
    if values in ([], [""]):
        if scope.get("http_version") == "1.0":
            return
        raise InvalidHost("The request has no Host header.")
    name = host_name(values[0]) if len(values) == 1 else None
    if name is None:
        raise InvalidHost(f"The Host header {values[0]!r} is not a host name or address.")
    if not host_allowed(name, bound, allowed):
        raise HostNotAllowed(
            f"This server does not answer to the host {name!r}: use its address or"
            " localhost, or add the name to the server's ALLOWED_HOSTS."
        )


def check_media_type(scope: Scope) -> None:
    """Raise ``UnsupportedMediaType`` (415) for a ``POST`` body that is not declared JSON."""
    if scope["method"] != "POST":
        return
    types = _values(scope, b"content-type")
    media = [value.partition(";")[0].strip().lower() for value in types]
    if media == ["application/json"] or (not media and not _has_body(scope)):
        return
    if len(media) > 1:
        got = "several Content-Type headers"
    else:
        got = f"Content-Type {types[0]!r}" if media else "no Content-Type"
    if media == ["application/x-www-form-urlencoded"]:
        got += " (what curl -d sends without -H 'Content-Type: application/json')"
    raise UnsupportedMediaType(
        "Request bodies must be JSON, sent with 'Content-Type: application/json';"
        f" this request has {got}."
    )


def _values(scope: Scope, name: bytes) -> list[str]:
    return [bytes(v).decode("latin-1") for k, v in scope["headers"] if k.lower() == name]


def _has_body(scope: Scope) -> bool:
    """HTTP/1 without Content-Length or Transfer-Encoding has none; HTTP/2 may send one
    undeclared, so there only ``content-length: 0`` says none."""
    if _values(scope, b"transfer-encoding"):
        return True
    if lengths := _values(scope, b"content-length"):
        return lengths != ["0"]
    return scope.get("http_version") not in ("1.0", "1.1")


def _is_address(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version
