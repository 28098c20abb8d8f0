"""The edge a web page or a guesser meets: Host, the media type of a body, failed keys,
the light limit on read-only routes, and log lines no request can forge.

The matchers and the log escaper are pure and tested as tables; every rule is also shown
through the real server, and every refusal is shown to reach no Claude Code run.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.conftest import Server, check_envelope, cli_processes, required_tool
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper import errors, logs
from wrapper.config import ConfigError, load
from wrapper.guard import check_host, check_media_type, host_allowed, host_name
from wrapper.logs import JsonFormatter, PlainFormatter, printable

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
JSON_TYPE = {"content-type": "application/json"}


async def raw(server: Server, request: bytes) -> bytes:
    """Send ``request`` as it is; the response (its head, and its body by Content-Length)."""
    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with trio.fail_after(30):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(request)
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            while length is not None and len(body) < int(length[1]):
                body += await stream.receive_some()
    return head + b"\r\n\r\n" + body


def nothing_ran(mock: MockAnthropic) -> None:
    assert mock.messages == []
    assert cli_processes() == []


# --- Host: the matcher ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8000", "localhost"),
        ("localhost.", "localhost"),
        ("localhost.:80", "localhost"),
        ("localhost:", "localhost"),  # RFC 3986: port = *DIGIT
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8000", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("api.example.com", "api.example.com"),
        ("under_score.internal", "under_score.internal"),
        # Not hosts:
        ("", None),
        ("::1", None),  # an IPv6 literal needs its brackets
        ("[::1", None),
        ("[127.0.0.1]", None),  # brackets hold IPv6 only
        ("[nope]", None),
        ("a b", None),
        ("a..b", None),
        ("localhost:http", None),
        ("localhost:123456", None),
        ("user@localhost", None),
        ("localhost/x", None),
        ("localhost\n", None),
        ("évil.example", None),
    ],
)
def test_host_name(value: str, name: str | None) -> None:
    assert host_name(value) == name


ALLOWED = (".example.com", "api.test")


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        # Addresses: a rebinding page has a name, never an address.
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("192.168.1.5", True),
        ("localhost", True),
        ("api.localhost", True),
        ("a.b.localhost", True),
        ("myhost", True),  # the bound HOST
        ("example.com", True),
        ("a.b.example.com", True),
        ("api.test", True),
        # Names nobody configured:
        ("evil.example", False),
        ("localhost.evil.example", False),
        ("evillocalhost", False),
        ("127.0.0.1.nip.io", False),  # resolves to loopback: the rebinding attack itself
        ("127.1", False),  # not a canonical address: a name, and not ours
        ("2130706433", False),
        ("badexample.com", False),
        ("example.com.evil", False),
        ("x.api.test", False),
        ("test", False),
    ],
)
def test_host_allowed(name: str, allowed: bool) -> None:
    assert host_allowed(name, "MyHost.", ALLOWED) is allowed


def test_host_allowed_star() -> None:
    assert host_allowed("anything.at.all", "127.0.0.1", ("*",))
    assert not host_allowed("anything.at.all", "127.0.0.1", ())


def scope(
    method: str = "GET", http_version: str = "1.1", **headers: str | list[str]
) -> dict[str, Any]:
    pairs = [
        (name.replace("_", "-").encode(), value.encode())
        for name, values in headers.items()
        for value in ([values] if isinstance(values, str) else values)
    ]
    return {"method": method, "http_version": http_version, "headers": pairs}


@pytest.mark.parametrize(
    ("request_scope", "error"),
    [
        (scope(host="localhost:8000"), None),
        (scope(http_version="1.0"), None),  # HTTP/1.0 may leave Host out
        (scope(http_version="1.0", host=""), None),
        (scope(), errors.InvalidHost),
        (scope(host=""), errors.InvalidHost),
        (scope(http_version="2", host=""), errors.InvalidHost),
        (scope(host=["localhost", "localhost"]), errors.InvalidHost),
        (scope(host="[::1"), errors.InvalidHost),
        (scope(host="evil.example"), errors.HostNotAllowed),
        (scope(http_version="1.0", host="evil.example"), errors.HostNotAllowed),
    ],
)
def test_check_host(request_scope: dict[str, Any], error: type[Exception] | None) -> None:
    if error is None:
        check_host(request_scope, "127.0.0.1", ())
    else:
        with pytest.raises(error):
            check_host(request_scope, "127.0.0.1", ())


# --- Host: through the server -----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200),
        ("localhost:9999", 200),
        ("LOCALHOST.", 200),
        ("api.localhost:8000", 200),
        ("127.0.0.1", 200),
        ("127.42.0.7:1", 200),
        ("[::1]:8000", 200),
        ("10.0.0.5:8000", 200),
        ("evil.example", 421),
        ("evil.example:8000", 421),
        ("localhost.evil.example", 421),
        ("127.0.0.1.nip.io:8000", 421),
        ("", 400),
        ("::1", 400),
        ("a b", 400),
    ],
)
async def test_host_through_the_server(
    start_server: Any, mock: MockAnthropic, host: str, status: int
) -> None:
    server = await start_server(api_keys=("the-key-0123",), cors_origins=("*",))
    key = {"authorization": "Bearer the-key-0123"}
    preflight = {"origin": "http://x", "access-control-request-method": "POST"}
    async with server.http() as http:
        with trio.fail_after(30):
            models = await http.get("/v1/models", headers={"host": host, **key})
            # Refused before the key check, the router and the preflight when not ours.
            keyless = await http.get("/v1/models", headers={"host": host})
            unknown = await http.get("/nope", headers={"host": host, **key})
            options = await http.options(
                "/v1/chat/completions", headers={"host": host, **preflight}
            )
    if status == 200:
        assert models.status_code == 200
        assert (keyless.status_code, unknown.status_code, options.status_code) == (401, 404, 204)
        return
    code = "host_not_allowed" if status == 421 else "invalid_host"
    for response in (models, keyless, unknown, options):
        message = check_envelope(response, status, code=code)
    if status == 421:
        assert message == (
            f"This server does not answer to the host {host_name(host)!r}: use its address"
            " or localhost, or add the name to the server's ALLOWED_HOSTS."
        )
    nothing_ran(mock)


async def test_rebinding_page_cannot_run_claude(start_server: Any, mock: MockAnthropic) -> None:
    # The attack: a JSON body, as a page on a rebound name would send it.
    server = await start_server()
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post(
                "/v1/chat/completions",
                json={**CHAT, "enable_tools": True},
                headers={"host": "attacker.example:8000", "origin": "http://attacker.example:8000"},
            )
    check_envelope(response, 421, code="host_not_allowed")
    nothing_ran(mock)


async def test_allowed_hosts(start_server: Any) -> None:
    server = await start_server(allowed_hosts=(".example.com", "api.test"))
    star = await start_server(allowed_hosts=("*",))
    hosts = ["example.com", "a.b.example.com:443", "api.test", "x.api.test", "badexample.com"]
    async with server.http() as http, star.http() as any_host:
        with trio.fail_after(30):
            codes = [(await http.get("/health", headers={"host": h})).status_code for h in hosts]
            starred = [
                (await any_host.get("/health", headers={"host": h})).status_code for h in hosts
            ]
    assert codes == [200, 200, 200, 421, 421]
    assert starred == [200] * len(hosts)


async def test_host_header_and_http_versions(server: Server) -> None:
    old = await raw(server, b"GET /health HTTP/1.0\r\n\r\n")
    old_foreign = await raw(server, b"GET /health HTTP/1.0\r\nhost: evil.example\r\n\r\n")
    # HTTP/1.1 without Host, or with two: h11 refuses them itself (RFC 9112: 400).
    missing = await raw(server, b"GET /health HTTP/1.1\r\nconnection: close\r\n\r\n")
    twice = await raw(
        server,
        b"GET /health HTTP/1.1\r\nhost: localhost\r\nhost: evil\r\nconnection: close\r\n\r\n",
    )
    assert old.startswith(b"HTTP/1.1 200")
    assert old_foreign.startswith(b"HTTP/1.1 421")
    assert missing.startswith(b"HTTP/1.1 400")
    assert twice.startswith(b"HTTP/1.1 400")


# --- the media type of a POST body ----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_scope", "refused"),
    [
        (scope("POST", content_type="application/json"), False),
        (scope("POST", content_type="application/json; charset=utf-8"), False),
        (scope("POST", content_type="Application/JSON ;charset=UTF-8"), False),
        (scope("POST", content_type="text/plain"), True),
        (scope("POST", content_type="text/plain; application/json"), True),
        (scope("POST", content_type="application/json, text/plain"), True),
        (scope("POST", content_type="application/jsonx"), True),
        (scope("POST", content_type="application/vnd.api+json"), True),
        (scope("POST", content_type=["application/json", "text/plain"]), True),
        (scope("POST", content_type=""), True),
        # No Content-Type: refused when there is a body, or may be one.
        (scope("POST", content_length="10"), True),
        (scope("POST", transfer_encoding="chunked"), True),
        (scope("POST", "2"), True),
        (scope("POST"), False),
        (scope("POST", content_length="0"), False),
        (scope("POST", "2", content_length="0"), False),
        # Only POST: browsers send bodies cross-site without a preflight with POST alone.
        (scope("GET", content_type="text/plain", content_length="3"), False),
    ],
)
def test_check_media_type(request_scope: dict[str, Any], refused: bool) -> None:
    if refused:
        with pytest.raises(errors.UnsupportedMediaType):
            check_media_type(request_scope)
    else:
        check_media_type(request_scope)


@pytest.mark.parametrize(
    ("content_type", "got"),
    [
        # What a page's fetch(url, {method: "POST", body: string}) sends: no preflight.
        ("text/plain;charset=UTF-8", "Content-Type 'text/plain;charset=UTF-8'"),
        ("multipart/form-data; boundary=x", "Content-Type 'multipart/form-data; boundary=x'"),
        (
            "application/x-www-form-urlencoded",
            "Content-Type 'application/x-www-form-urlencoded' (what curl -d sends without"
            " -H 'Content-Type: application/json')",
        ),
        (None, "no Content-Type"),
    ],
)
async def test_non_json_post_is_415_before_any_work(
    start_server: Any, mock: MockAnthropic, content_type: str | None, got: str
) -> None:
    server = await start_server(api_keys=("the-key-0123",))
    headers = {"authorization": "Bearer the-key-0123", "x-request-id": "typed"}
    if content_type is not None:
        headers["content-type"] = content_type
    async with server.http() as http:
        with trio.fail_after(30):
            response = await http.post(
                "/v1/chat/completions",
                content=json.dumps({**CHAT, "enable_tools": True}).encode(),
                headers=headers,
            )
    message = check_envelope(response, 415, code="unsupported_media_type")
    assert message == (
        "Request bodies must be JSON, sent with 'Content-Type: application/json';"
        f" this request has {got}."
    )
    assert response.headers["x-request-id"] == "typed"
    nothing_ran(mock)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/Json"])
async def test_json_with_parameters_or_any_case_runs(
    http: httpx.AsyncClient, mock: MockAnthropic, content_type: str
) -> None:
    with trio.fail_after(30):
        response = await http.post(
            "/v1/chat/completions",
            content=json.dumps(CHAT).encode(),
            headers={"content-type": content_type},
        )
    assert response.status_code == 200, response.text
    assert len(mock.messages) == 1


async def test_bodiless_post_without_type_reaches_the_handler(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        response = await http.post("/v1/chat/completions")
    check_envelope(response, 400, code="invalid_json")


async def test_415_comes_before_the_body_is_read(start_server: Any, mock: MockAnthropic) -> None:
    # Headers promise a body that never comes: the answer cannot wait for it (a read
    # would last READ_TIMEOUT, a minute here, past the safety net).
    server = await start_server(read_timeout=60.0)
    received = await raw(
        server,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: text/plain\r\ncontent-length: 100000\r\n\r\n",
    )
    assert received.startswith(b"HTTP/1.1 415")
    assert b'"code":"unsupported_media_type"' in received
    nothing_ran(mock)


async def test_415_comes_before_a_run_slot(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(max_concurrent_runs=1, max_queued_runs=0)
    mock.default = Reply.text("slow", pieces=4, delay=0.3)
    async with server.http() as http:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(http.post, "/v1/chat/completions", json=CHAT))
                await mock.request_arrived.wait()  # the one slot is taken
                typed = await http.post(
                    "/v1/chat/completions",
                    content=json.dumps(CHAT).encode(),
                    headers={"content-type": "text/plain"},
                )
                busy = await http.post("/v1/chat/completions", json=CHAT)
    check_envelope(typed, 415, code="unsupported_media_type")
    check_envelope(busy, 503, code="server_busy", error_type="server_error")
    assert len(mock.messages) == 1


async def test_curl_d_is_told_what_to_send(server: Server, mock: MockAnthropic) -> None:
    result = await trio.run_process(
        [
            required_tool("curl"),
            "--silent",
            "--show-error",
            f"{server.base_url}/chat/completions",
            "-d",
            json.dumps(CHAT),
        ],
        capture_stdout=True,
        capture_stderr=True,
    )
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "unsupported_media_type"
    assert "curl -d" in error["message"]
    assert "-H 'Content-Type: application/json'" in error["message"]
    nothing_ran(mock)


# --- failed API keys ----------------------------------------------------------------------

KEY = "right-key-0123456789"


async def test_failed_keys_are_limited_per_address_before_the_compare(
    start_server: Any, mock_clock: trio.testing.MockClock
) -> None:
    server = await start_server(
        api_keys=(KEY,),
        trusted_proxies=("127.0.0.1",),
        rate_limits={"auth_failure": (1.0, 3.0)},  # three, then one a minute
    )

    async def get(address: str, key: str | None) -> httpx.Response:
        headers = {"x-forwarded-for": address}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return await http.get("/v1/models", headers=headers)

    async with server.http() as http:
        with trio.fail_after(30):
            guesses = [(await get("203.0.113.66", f"guess-{n}")).status_code for n in range(3)]
            blocked = await get("203.0.113.66", "guess-3")
            # The right key from the guesser's address is refused too: no compare, no oracle.
            right_from_guesser = await get("203.0.113.66", KEY)
            # Everyone else: untouched by the guesser, and charged only for their own.
            other = await get("198.51.100.7", KEY)
            other_wrong = await get("198.51.100.7", "typo")
            # A missing key is not a guess: it is never charged.
            missing = [(await get("198.51.100.8", None)).status_code for _ in range(5)]
            after_missing = await get("198.51.100.8", KEY)
        mock_clock.jump(60)  # virtual time: outside the safety net's scope
        with trio.fail_after(30):
            one_more = await get("203.0.113.66", "guess-4")
            again = await get("203.0.113.66", KEY)
    assert guesses == [401, 401, 401]
    for response in (blocked, right_from_guesser):
        assert response.status_code == 429
        assert response.headers["retry-after"] == "60"
        assert response.json()["error"] == {
            "message": "Too many wrong API keys from this address. Try again in 60 seconds.",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": "too_many_requests",
            "retry_after": 60,
        }
    assert (other.status_code, other_wrong.status_code) == (200, 401)
    assert (missing, after_missing.status_code) == ([401] * 5, 200)
    assert (one_more.status_code, again.status_code) == (401, 429)


async def test_failed_key_limit_holds_with_rate_limits_off(start_server: Any) -> None:
    server = await start_server(
        api_keys=(KEY,), rate_limit_enabled=False, rate_limits={"auth_failure": (1.0, 2.0)}
    )
    async with server.http() as http:
        with trio.fail_after(30):
            codes = [
                (await http.get("/v1/models", headers={"x-api-key": f"guess-{n}"})).status_code
                for n in range(3)
            ]
    assert codes == [401, 401, 429]


# --- read-only routes -------------------------------------------------------------------


async def test_read_only_routes_share_a_light_limit(
    start_server: Any, mock_clock: trio.testing.MockClock
) -> None:
    server = await start_server(rate_limits={"read": (60.0, 6.0)}, metrics_public=True)
    paths = ["/v1/models", "/v1/models/sonnet", "/v1/tools", "/v1/sessions"]
    paths += ["/v1/sessions/stats", "/metrics", "/v1/sessions/some-id", "/v1/models"]
    async with server.http() as http:
        with trio.fail_after(30):
            codes = [(await http.get(path)).status_code for path in paths]
            health = await http.get("/health")
    assert codes[:6] == [200] * 6
    assert codes[6:] == [429, 429]  # an unknown session id is limited before it is looked up
    assert health.status_code == 200  # a class of its own


async def test_default_read_limit_is_generous(
    server: Server, mock_clock: trio.testing.MockClock
) -> None:
    # Virtual time stands still: no token comes back however long the requests take.
    async with server.http() as http:
        with trio.fail_after(60):
            codes = [(await http.get("/v1/models")).status_code for _ in range(121)]
    assert codes == [200] * 120 + [429]


# --- logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("GET /v1/models 200", "GET /v1/models 200"),
        ("é ü 日本 🙂 'quotes' \\backslash", "é ü 日本 🙂 'quotes' \\backslash"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("\x1b[2J\x00\x7f", "\\x1b[2J\\x00\\x7f"),
        ("\x85\x0b\x0c\x1c", "\\x85\\x0b\\x0c\\x1c"),  # line breaks to str.splitlines
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\u202egnp.exe", "\\u202egnp.exe"),  # a bidirectional override
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("\U000e0041tag", "\\U000e0041tag"),
    ],
)
def test_printable(text: str, logged: str) -> None:
    assert printable(text) == logged
    assert len(printable(text).splitlines()) == 1


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("wrapper.app", logging.INFO, __file__, 1, message, args, info)


def test_plain_format_is_one_line_per_record_and_indents_tracebacks() -> None:
    formatter = PlainFormatter("%(levelname)s %(name)s: %(message)s")
    forged = "x\n2026-01-01 00:00:00,000 INFO wrapper.app: GET /admin 200"
    assert formatter.format(record("%s %s", "GET", forged)) == (
        "INFO wrapper.app: GET x\\n2026-01-01 00:00:00,000 INFO wrapper.app: GET /admin 200"
    )
    try:
        raise ValueError(forged)
    except ValueError as exc:
        lines = formatter.format(record("boom", exc=exc)).split("\n")
    assert lines[0] == "INFO wrapper.app: boom"
    assert len(lines) > 3
    assert all(line.startswith("    ") for line in lines[1:])


def test_json_format_escapes_by_itself() -> None:
    message = "a\nb\r\u2028\x1b\x85"
    out = JsonFormatter().format(record("%s", message))
    assert len(out.splitlines()) == 1
    assert out.isascii()
    assert json.loads(out)["message"] == message


@pytest.fixture
def plain_log() -> Iterator[io.StringIO]:
    """What the server logs, formatted as ``LOG_FORMAT=plain`` has it (``logs.setup``)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("INFO", "plain")
    formatter = root.handlers[0].formatter
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("wrapper")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_a_request_cannot_forge_a_log_line(
    http: httpx.AsyncClient, mock: MockAnthropic, plain_log: io.StringIO
) -> None:
    forged = (
        "%0a2026-01-01%2000:00:00,000%20INFO%20wrapper.app:%20GET%20/admin%20200%1b[2J%e2%80%ae"
    )
    with trio.fail_after(30):
        missing = await http.get(f"/v1/models{forged}")
        ran = await http.post(
            "/v1/chat/completions", json={**CHAT, "model": "sonnet\r\nINFO forged: model"}
        )
    assert (missing.status_code, ran.status_code) == (404, 200)

    def access_lines() -> list[str]:
        return [line for line in plain_log.getvalue().splitlines() if "wrapper.app:" in line]

    with trio.fail_after(5):
        while len(access_lines()) < 2:  # noqa: ASYNC110 - logged just after the response
            await trio.sleep(0.01)
    lines = access_lines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        " GET /v1/models\\n2026-01-01 00:00:00,000 INFO wrapper.app: GET /admin 200"
        f"\\x1b[2J\\u202e 404 {lines[0].split(' 404 ')[1]}"
    )
    assert "model=sonnet\\r\\nINFO forged: model" in lines[1]


# --- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_value", "hosts"),
    [
        ("claude.example.com", ("claude.example.com",)),
        ("A.example.com, .Example.ORG.", ("a.example.com", ".example.org")),
        ("*", ("*",)),
        ('["api.test"]', ("api.test",)),
    ],
)
def test_allowed_hosts_setting(raw_value: str, hosts: tuple[str, ...]) -> None:
    config = load(["--env-file", "/nonexistent/.env"], {"ALLOWED_HOSTS": raw_value})
    assert config.allowed_hosts == hosts


@pytest.mark.parametrize(
    "raw_value", ["http://claude.example.com", "claude.example.com:443", "a/b", "*.example.com"]
)
def test_allowed_hosts_refuses_what_is_not_a_host(raw_value: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_HOSTS"):
        load(["--env-file", "/nonexistent/.env"], {"ALLOWED_HOSTS": raw_value})
