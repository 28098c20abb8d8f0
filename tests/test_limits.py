"""Token buckets, their eviction, trusted proxies, the run cap and slow clients."""

from __future__ import annotations

import ipaddress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.conftest import metric, transcripts, wait_for_no_cli
from tests.mock_anthropic import MockAnthropic, Reply
from wrapper.config import load
from wrapper.errors import (
    BUSY_RETRY_AFTER,
    RateLimited,
    ServerBusy,
    TooManyRuns,
    openai_envelope,
)
from wrapper.limits import RateLimiter, RunGate, client_address, parse_networks


@attrs.define
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_refills_by_arithmetic() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"chat": (6.0, 3.0)}, clock=clock)  # one token every 10 s
    remaining = [limiter.check("chat", "a").remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(RateLimited) as caught:
        limiter.check("chat", "a")
    assert caught.value.retry_after == 10
    assert caught.value.headers()["retry-after"] == "10"
    assert openai_envelope(caught.value)["error"]["retry_after"] == 10
    assert openai_envelope(caught.value)["error"]["code"] == "too_many_requests"
    clock.now = 9.9
    with pytest.raises(RateLimited):
        limiter.check("chat", "a")
    clock.now = 10.0
    assert limiter.check("chat", "a").remaining == 0
    assert limiter.check("chat", "b").remaining == 2  # other clients have their own


def test_buckets_are_per_route_class() -> None:
    limiter = RateLimiter({"chat": (1.0, 1.0), "health": (1.0, 1.0)}, clock=FakeClock())
    limiter.check("chat", "a")
    limiter.check("health", "a")
    with pytest.raises(RateLimited):
        limiter.check("chat", "a")


def test_table_stays_bounded_under_a_flood_of_clients() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"chat": (10.0, 10.0)}, clock=clock, max_clients=10_000)
    for i in range(25_000):
        limiter.check("chat", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter.buckets) == 10_000
    # The most recent clients are the ones kept.
    assert ("chat", "10.0.97.167") in limiter.buckets  # client 24999
    assert ("chat", "10.0.0.0") not in limiter.buckets


def test_sweep_forgets_only_refilled_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"chat": (60.0, 5.0)}, clock=clock)  # a token a second
    limiter.check("chat", "idle")
    clock.now = 3.0
    for _ in range(5):
        limiter.check("chat", "busy")
    clock.now = 4.5
    limiter.sweep()
    assert list(limiter.buckets) == [("chat", "busy")]


PROXY = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy: header ignored
        ("127.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the left part is the client's say
        ("127.0.0.1", "1.2.3.4, 10.1.1.1", "1.2.3.4"),  # skip trusted hops from the right
        ("127.0.0.1", "10.2.2.2, 10.1.1.1", "10.2.2.2"),
        ("127.0.0.1", "", "127.0.0.1"),
        # Not an address: never the client; the walk stops there.
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
        ("127.0.0.1", "1.2.3.4, evil\nline", "127.0.0.1"),
        ("127.0.0.1", "6.6.6.6, unknown, 10.1.1.1", "10.1.1.1"),
        ("127.0.0.1", "_hidden, 1.2.3.4", "1.2.3.4"),
        # Ports, as some proxies append them, and IPv6 in canonical form.
        ("127.0.0.1", "1.2.3.4:5678", "1.2.3.4"),
        ("127.0.0.1", "[2001:DB8::1]:443", "2001:db8::1"),
        ("127.0.0.1", "2001:db8:0::1", "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, client: str) -> None:
    assert client_address(peer, forwarded, PROXY) == client


def test_parse_networks() -> None:
    assert PROXY[1] == ipaddress.ip_network("10.0.0.0/8")


async def test_rate_limit_through_the_server(
    start_server: Any, mock_clock: trio.testing.MockClock
) -> None:
    server = await start_server(rate_limits={"health": (60.0, 2.0), "chat": (10.0, 10.0)})
    async with server.http() as http:
        first = await http.get("/health")
        second = await http.get("/health")
        refused = await http.get("/health")
        mock_clock.jump(1.0)
        refilled = await http.get("/health")
    assert [first.status_code, second.status_code, refused.status_code] == [200, 200, 429]
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error == {
        "message": "Rate limit exceeded. Try again in 1 second.",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "too_many_requests",
        "retry_after": 1,
    }
    assert refilled.status_code == 200


async def test_chat_responses_carry_rate_limit_headers(
    start_server: Any, mock: MockAnthropic
) -> None:
    # One token per 10 s: none comes back during the test.
    server = await start_server(rate_limits={"chat": (6.0, 3.0), "health": (30.0, 30.0)})
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with server.http() as http:
        with trio.fail_after(60):
            responses = [await http.post("/v1/chat/completions", json=body) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses] == ["2", "1", "0", "0"]
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"3"}
    assert responses[0].headers["x-ratelimit-reset-requests"].endswith("s")
    assert len(mock.messages) == 3  # the refused request never reached Claude Code


async def test_forwarded_clients_get_their_own_buckets(start_server: Any) -> None:
    limits = {"health": (60.0, 1.0)}
    trusting = await start_server(rate_limits=limits, trusted_proxies=("127.0.0.1",))
    naive = await start_server(rate_limits=limits)
    results = {}
    for name, server in (("trusting", trusting), ("naive", naive)):
        async with server.http() as http:
            with trio.fail_after(30):
                a = await http.get("/health", headers={"x-forwarded-for": "1.1.1.1"})
                b = await http.get("/health", headers={"x-forwarded-for": "2.2.2.2"})
        results[name] = (a.status_code, b.status_code)
    assert results == {"trusting": (200, 200), "naive": (200, 429)}


async def test_keyed_clients_get_their_own_buckets(start_server: Any) -> None:
    server = await start_server(rate_limits={"auth": (60.0, 1.0)}, api_keys=("k1-aaaa", "k2-bbbb"))
    async with server.http() as http:
        with trio.fail_after(30):
            codes = [
                (await http.get("/v1/auth/status", headers={"x-api-key": key})).status_code
                for key in ("k1-aaaa", "k2-bbbb", "k1-aaaa")
            ]
    assert codes == [200, 200, 429]


async def test_run_cap_and_bounded_queue(start_server: Any, mock: MockAnthropic) -> None:
    server = await start_server(max_concurrent_runs=1, max_queued_runs=1)
    mock.default = Reply.text("slow", pieces=4, delay=0.3)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []

    async def post() -> None:
        response = await http.post("/v1/chat/completions", json=body)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "server_busy"
            assert response.headers["retry-after"] == str(BUSY_RETRY_AFTER)

    async with server.http() as http:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post)
                await mock.request_arrived.wait()  # one running
                nursery.start_soon(post)
                while await metric(http, "wrapper_queued_runs") < 1:  # noqa: ASYNC110
                    await trio.sleep(0.02)  # one waiting: the gate has no event to give
                nursery.start_soon(post)  # one too many
    assert sorted(statuses) == [200, 200, 503]
    assert statuses[0] == 503  # refused at once, not after the others
    first, second = mock.messages
    assert first.finished is not None
    assert second.started >= first.finished  # never two runs at once
    assert await wait_for_no_cli() == []


async def test_gate_refuses_only_when_queue_is_full() -> None:
    gate = RunGate(max_concurrent=1, max_queued=1, max_per_client=10)
    holding, release = trio.Event(), trio.Event()
    order: list[str] = []

    async def run(name: str, hold: trio.Event | None = None) -> None:
        async with gate.slot(name):
            order.append(name)
            if hold is not None:
                holding.set()
                await hold.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "first", release)
            await holding.wait()
            nursery.start_soon(run, "queued")
            while gate.waiting == 0:
                await trio.lowlevel.checkpoint()
            with pytest.raises(ServerBusy):  # one running, one waiting: full
                async with gate.slot("third"):
                    pass
            release.set()
    assert order == ["first", "queued"]
    async with gate.slot("third"):  # free again once both are done
        assert (gate.waiting, gate.running) == (0, 1)
    assert gate.clients == {}  # a client that has no run left is forgotten


async def test_client_stalling_in_its_headers_is_cut_off(start_server: Any) -> None:
    # hypercorn's keep-alive timer covers a request whose headers never end. Real time,
    # one second: the autojump clock finds no deadline to jump to inside hypercorn here.
    server = await start_server(keep_alive_timeout=1.0)
    host, port = server.url.removeprefix("http://").split(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        started = trio.current_time()
        assert await stream.receive_some() == b""
    assert 0.5 < trio.current_time() - started < 5
    await stream.aclose()


async def test_client_trickling_its_body_gets_408(
    start_server: Any, autojump_clock: trio.testing.MockClock, mock: MockAnthropic
) -> None:
    server = await start_server(read_timeout=5.0)
    host, port = server.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
    )  # and stalls; the autojump clock runs ahead while everyone waits
    started = trio.current_time()
    received = b""
    while b"}}" not in received:
        received += await stream.receive_some()
    assert received.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in received
    assert 5.0 <= trio.current_time() - started < 6.0
    assert mock.messages == []
    await stream.aclose()


async def test_unfinished_oversized_headers_are_refused(start_server: Any) -> None:
    # h11 buffers at most max_header_bytes of a request whose headers have not ended.
    server = await start_server(max_header_bytes=2048)
    host, port = server.url.removeprefix("http://").split(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 4000)
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
    assert received.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")
    await stream.aclose()
    async with server.http() as http:
        with trio.fail_after(10):
            fine = await http.get("/health", headers={"x-padding": "a" * 1000})
    assert fine.status_code == 200


async def test_a_client_over_its_cap_is_refused_while_others_get_slots() -> None:
    gate = RunGate(max_concurrent=2, max_queued=4, max_per_client=1)
    release = trio.Event()

    async def hold(client: str, task_status: trio.TaskStatus[None]) -> None:
        async with gate.slot(client):
            task_status.started()
            await release.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(hold, "greedy")
            with pytest.raises(TooManyRuns) as caught:
                async with gate.slot("greedy"):
                    pass
            await nursery.start(hold, "other")
            assert (gate.running, dict(gate.clients)) == (2, {"greedy": 1, "other": 1})
            release.set()
    assert caught.value.status == 429
    assert caught.value.headers()["retry-after"] == str(BUSY_RETRY_AFTER)
    assert gate.clients == {}


async def wait_for_runs(mock: MockAnthropic, count: int) -> None:
    while len(mock.messages) < count:  # noqa: ASYNC110 - the mock records; nothing to wait on
        await trio.sleep(0.02)


CHAT = {"messages": [{"role": "user", "content": "hi"}]}
FUNCTIONS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


async def test_refusals_come_before_the_run_slot(
    start_server: Any, mock: MockAnthropic, tmp_path: Path
) -> None:
    """Under full load (the one slot busy, no queue) each request still gets its own
    refusal, not 503: nothing that can refuse a request waits for a slot."""
    server = await start_server(max_concurrent_runs=1, max_queued_runs=0)
    gone = {**CHAT, "session_id": "gone"}
    refusals: list[tuple[dict[str, Any], tuple[int, str | None, str | None]]] = [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            (400, "invalid_json", None),
        ),
        (
            {"json": {"messages": [{"role": "user", "content": 42}]}},
            (400, None, "messages[0].content"),
        ),
        (
            {"json": {**CHAT, "session_id": "s", "tools": FUNCTIONS}},
            (400, "unsupported_in_session", "tools"),
        ),
        ({"json": {**CHAT, "session_id": "..."}}, (400, "invalid_session_id", "session_id")),
        (  # the tool policy is planned before the slot too (it once was the backend's)
            {"json": {**CHAT, "enable_tools": True, "allowed_tools": ["Bash"]}},
            (400, "tool_not_allowed", "allowed_tools"),
        ),
        ({"json": gone}, (409, "session_transcript_missing", "session_id")),
    ]
    async with server.http() as http:
        with trio.fail_after(60):
            assert (await http.post("/v1/chat/completions", json=gone)).status_code == 200
            [transcript] = transcripts(tmp_path)
            transcript.unlink()
            mock.default = Reply.text("slow", pieces=5, delay=0.4)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(http.post, "/v1/chat/completions", json=CHAT))
                await wait_for_runs(mock, 2)
                busy = await http.post("/v1/chat/completions", json=CHAT)
                assert busy.status_code == 503  # the server is full indeed
                for request, expected in refusals:
                    response = await http.post("/v1/chat/completions", **request)
                    error = response.json()["error"]
                    assert (response.status_code, error["code"], error["param"]) == expected
                assert mock.messages[1].finished is None  # all while the slot was taken
    assert len(mock.messages) == 2


async def test_a_turn_waiting_for_its_session_holds_no_slot(
    start_server: Any, mock: MockAnthropic
) -> None:
    server = await start_server(max_concurrent_runs=2, max_queued_runs=0)
    hold = trio.Event()  # both first runs go on until the gauges are read
    mock.script(Reply.text("slow", hold=hold), Reply.text("meanwhile", hold=hold))
    session = {**CHAT, "session_id": "s1"}
    statuses: list[int] = []

    async def post(body: dict[str, Any]) -> None:
        statuses.append((await http.post("/v1/chat/completions", json=body)).status_code)

    async with server.http() as http:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, session)
                await wait_for_runs(mock, 1)
                nursery.start_soon(post, session)  # waits for the first turn of s1
                # Both turns, and this scrape; the server holds no event to wait on.
                while await metric(http, "wrapper_active_requests") < 3:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                nursery.start_soon(post, CHAT)  # gets the second slot meanwhile
                await wait_for_runs(mock, 2)
                gauges = [
                    await metric(http, f"wrapper_{g}") for g in ("active_runs", "queued_runs")
                ]
                hold.set()
            first, stateless, second = mock.messages
    assert statuses.count(200) == 3
    assert gauges == [2, 0]
    assert first.finished is not None and stateless.started < first.finished
    assert second.started >= first.finished  # the session's turns in order


async def test_one_client_cannot_take_every_slot(start_server: Any, mock: MockAnthropic) -> None:
    keys = ("greedy-key-1", "modest-key-2")
    server = await start_server(
        api_keys=keys, max_concurrent_runs=3, max_queued_runs=0, max_runs_per_client=2
    )
    # The greedy runs are held until the modest one is served: it must be served beside them.
    release = trio.Event()
    mock.script(*[Reply.text("held", hold=release)] * 2)
    greedy, modest = ({"x-api-key": key} for key in keys)
    statuses: list[int] = []

    async def post(headers: dict[str, str]) -> None:
        response = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
        statuses.append(response.status_code)

    async with server.http() as http:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, greedy)
                nursery.start_soon(post, greedy)
                await wait_for_runs(mock, 2)
                refused = await http.post("/v1/chat/completions", json=CHAT, headers=greedy)
                served = await http.post("/v1/chat/completions", json=CHAT, headers=modest)
                release.set()
            limited = await metric(http, "wrapper_rate_limited_total", headers=modest)
    assert (refused.status_code, served.status_code, statuses) == (429, 200, [200, 200])
    assert refused.headers["retry-after"] == str(BUSY_RETRY_AFTER)
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["retry_after"]) == (
        "rate_limit_exceeded",
        "too_many_concurrent_runs",
        BUSY_RETRY_AFTER,
    )
    assert limited == 1  # counted as the server's own refusal, not upstream's
    assert len(mock.messages) == 3


def test_runs_per_client_setting() -> None:
    assert load(["--env-file", "/nonexistent"], {}).max_runs_per_client == 4
    assert (
        load(["--env-file", "/nonexistent"], {"MAX_RUNS_PER_CLIENT": "1"}).max_runs_per_client == 1
    )
