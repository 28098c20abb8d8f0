"""Stress scenarios at the HTTP edge: fuzzed bodies, headers, framing and session ids;
slow, oversized and idle connections; a reader slower than the answer.

Theory of operation, for the fuzz: one server with a single run slot and no queue, that
slot held by one long streamed answer. A fuzzed request the server accepts therefore gets
a fast 503 ``server_busy`` at the run gate and never starts a CLI (the mock counts every
upstream request: the guarantee is that the fuzz adds none), while everything the server
refuses earlier gets its 4xx. Cases come from ``random.Random(seed)``, so a failure
replays. Every loop is bounded; every figure is a count or a duration.
"""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.harness import server_process
from bench.probes import (
    Sampler,
    chat,
    health,
    is_envelope,
    mb,
    memory_kb,
    open_fds,
    percentiles,
    request,
    settled,
)
from bench.stress_runs import MODEL, body, stream_outcome
from tests import raw_http
from tests.conftest import processes_in, processes_under
from tests.mock_anthropic import MockAnthropic, Reply

# 10,000 chunks 0.1 s apart: holds the fuzz server's only run slot for the whole fuzz.
HOLD = Reply.text("h" * 10_000, pieces=10_000, delay=0.1)
KNOWN_FIELDS = (
    "model",
    "messages",
    "stream",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "tools",
    "tool_choice",
    "seed",
    "metadata",
    "response_format",
    "stream_options",
    "session_id",
    "enable_tools",
    "parallel_tool_calls",
    "audio",
    "reasoning_effort",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "modalities",
    "store",
)
ROLES = ("user", "assistant", "system", "developer", "tool", "function", "", "USER", None)
HEADER_NAMES = (
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "authorization",
    "x-session-id",
    "x-request-id",
    "x-forwarded-for",
    "origin",
    "accept",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "access-control-request-method",
    "cookie",
)


def any_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: scalars of every type and edge, arrays and objects."""
    kinds = ["null", "bool", "int", "float", "str"] + ["list", "dict"] * (depth < 4)
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**400, rng.randint(-9, 9999)])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, -1e-308, 2.5, 3.0])
    if kind == "str":
        return any_text(rng)
    if kind == "list":
        return [any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {any_text(rng, 12): any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def any_text(rng: random.Random, limit: int = 40) -> str:
    alphabet = string.printable + "\0\u00e9\u202e\ud7ff\U0001f600 \t\n"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, limit)))
    return rng.choice([text, text, "", " \n\t", "x" * rng.choice([1, 300, 70_000])])


def any_message(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return any_json(rng)
    message: dict[str, Any] = {"role": rng.choice(ROLES)}
    content = rng.choice(
        [any_text(rng), None, [{"type": "text", "text": any_text(rng)}], any_json(rng)]
    )
    if rng.random() < 0.9:
        message["content"] = content
    for _ in range(rng.randint(0, 2)):
        message[rng.choice(["name", "tool_calls", "tool_call_id", "x"])] = any_json(rng)
    return message


def fuzz_body(rng: random.Random) -> bytes:
    """One request body: mostly a chat request with fields replaced, added or dropped;
    sometimes any JSON at all, or bytes that are not JSON."""
    roll = rng.random()
    if roll < 0.1:
        return json.dumps(any_json(rng)).encode()
    if roll < 0.2:
        depth = rng.choice([10, 127, 129, 1000, 5000])
        raw = rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
        return rng.choice([raw, b'{"model": "m", "x": ' + raw + b"}", b"{", b"\xff\xfe", b"1e999"])
    payload: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for _ in range(rng.randint(0, 4)):
        field = rng.choice([*KNOWN_FIELDS, any_text(rng, 8)])
        if field == "messages":
            payload[field] = [any_message(rng) for _ in range(rng.randint(0, 4))]
        elif rng.random() < 0.15:
            payload.pop(field, None)
        else:
            payload[field] = any_json(rng)
    text = json.dumps(payload, allow_nan=False).encode()
    if rng.random() < 0.05:  # cut short, or a duplicate key
        text = rng.choice([text[: rng.randrange(len(text))], text[:-1] + b', "model": 1}'])
    return text


def fuzz_headers(rng: random.Random) -> bytes:
    """A request on a route with random extra or missing headers (each one complete)."""
    method, path = rng.choice(
        [("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    )
    payload = json.dumps(body("headers")).encode() if method == "POST" else b""
    lines = [f"{method} {path} HTTP/1.1"]
    if rng.random() < 0.9:
        lines.append("host: " + rng.choice(["127.0.0.1", "localhost", "[::1]", "", "a b", "é"]))
    lines.append("connection: close")
    if method == "POST" and rng.random() < 0.8:
        lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    for _ in range(rng.randint(1, 4)):
        value = rng.choice(
            [any_text(rng).replace("\r", "").replace("\n", ""), "0", "-1", "chunked"]
        )
        lines.append(f"{rng.choice(HEADER_NAMES)}: {value}")
    return "\r\n".join([*lines, "", ""]).encode("utf-8", "surrogatepass") + payload


def fuzz_session(rng: random.Random) -> bytes:
    """A session id, random, in a route's path, a chat body or the X-Session-Id header."""
    raw = rng.choice([any_text(rng, 140), "." * rng.randint(1, 3), "a" * 129, "ok-id_1:2"])
    quoted = "".join(c if c.isalnum() else f"%{ord(c) & 0xFF:02X}" for c in raw) or "%20"
    where = rng.choice(["get", "delete", "body", "header", "body"])
    if where in ("get", "delete"):
        return request(where.upper(), f"/v1/sessions/{quoted}")
    if where == "header":
        value = raw.encode("ascii", "replace").decode().replace("\r", "").replace("\n", "")
        return chat(body("session"), f"x-session-id: {value}")
    return chat(body("session", session_id=rng.choice([raw, any_json(rng)])))


async def exchange(url: str, data: bytes) -> tuple[list[raw_http.Response], bytes]:
    """``raw_http.exchange``, with a reset counted as an unanswered case, not a failure."""
    try:
        return await raw_http.exchange(url, data)
    except trio.BrokenResourceError:
        return [], b"reset"


def judge(outcomes: Counter[str], responses: list[raw_http.Response], rest: bytes) -> None:
    """Count each answer as ``<status> <code>``, or what is wrong with it."""
    if not responses:
        outcomes["no answer (closed)" if rest == b"" else "no answer (garbled)"] += 1
    for response in responses:
        if response.status < 400:
            outcomes[f"{response.status}"] += 1
        elif is_envelope(response):
            error = json.loads(response.body)["error"]
            outcomes[f"{response.status} {error['code'] or error['type']}"] += 1
        else:
            outcomes[f"{response.status} NOT AN ENVELOPE"] += 1


async def fuzz(
    root: Path, bodies: int, headers: int, framing: int, sessions: int
) -> dict[str, Any]:
    mock = MockAnthropic(default=Reply.text("fuzz answer"))
    mock.script(HOLD)
    env = {
        "MAX_CONCURRENT_RUNS": "1",
        "MAX_QUEUED_RUNS": "0",
        "READ_TIMEOUT": "1",
        "KEEP_ALIVE_TIMEOUT": "1",
        "MAX_HEADER_BYTES": "4096",
    }
    rng = random.Random(10)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            holder: list[str] = []
            nursery.start_soon(stream_outcome, server.url, body("hold", stream=True), holder)
            with trio.fail_after(30):
                while len(holder) < 2:  # noqa: ASYNC110 - the slot is held once text flows
                    await trio.sleep(0.05)
            start = trio.current_time()
            results["bodies"] = await fuzz_bodies(
                server.url, [fuzz_body(rng) for _ in range(bodies)]
            )
            results["bodies_per_s"] = round(bodies / (trio.current_time() - start))
            for name, make, count in [
                ("headers", fuzz_headers, headers),
                ("framing", lambda r: raw_http.mutate(r, r.choice(FRAMING_BASES)), framing),
                ("session_ids", fuzz_session, sessions),
            ]:
                results[name] = await fuzz_raw(server.url, [make(rng) for _ in range(count)])
            results["runs_started_by_fuzz"] = len(mock.messages) - 1  # the holder's
            results["health_after"] = await health(server.url)
            results["server_alive"] = server.process.poll() is None
        nursery.cancel_scope.cancel()
    return results


FRAMING_BASES = [
    request("GET", "/health"),
    chat(body("framing")),
    chat(body("framing", stream=True)).replace(b"connection: close\r\n", b""),
]


async def fuzz_bodies(url: str, cases: list[bytes]) -> dict[str, int]:
    """POST each body on kept-alive connections, 4 at a time."""
    outcomes: Counter[str] = Counter()
    limiter = trio.CapacityLimiter(4)
    headers = {"content-type": "application/json"}

    async def one(http: httpx.AsyncClient, data: bytes) -> None:
        async with limiter:
            r = await http.post("/v1/chat/completions", content=data, headers=headers)
        try:
            error = r.json()["error"]
            envelope = sorted(error) >= ["code", "message", "param", "type"]
        except (ValueError, KeyError, TypeError):
            envelope = False
        if r.status_code < 400:
            outcomes[f"{r.status_code}"] += 1
        else:
            label = (error["code"] or error["type"]) if envelope else "NOT AN ENVELOPE"
            outcomes[f"{r.status_code} {label}"] += 1

    with trio.fail_after(60 + len(cases) * 0.1):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http, trio.open_nursery() as n:
            for data in cases:
                n.start_soon(one, http, data)
    return dict(outcomes.most_common())


async def fuzz_raw(url: str, cases: list[bytes]) -> dict[str, int]:
    """Send each case on its own connection, 20 at a time, and read to the close."""
    outcomes: Counter[str] = Counter()
    limiter = trio.CapacityLimiter(20)  # most malformed cases wait out a 1 s timeout

    async def one(data: bytes) -> None:
        async with limiter:
            judge(outcomes, *await exchange(url, data))

    with trio.fail_after(60 + len(cases) * 0.2):
        async with trio.open_nursery() as nursery:
            for data in cases:
                nursery.start_soon(one, data)
    return dict(outcomes.most_common())


async def slow_clients(root: Path, slowloris: int, oversized: int) -> dict[str, Any]:
    """``slowloris`` connections that send a header line every 0.5 s and never end their
    headers, plus as many that trickle a body; ``oversized`` bodies past the limit,
    declared or chunked; meanwhile a well-behaved client's ``/health`` latency."""
    timeouts = {"READ_TIMEOUT": "2", "KEEP_ALIVE_TIMEOUT": "2"}
    env = {**timeouts, "MAX_REQUEST_BYTES": str(1 << 20)}
    mock = MockAnthropic()
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            rss_before = memory_kb(server.pid)
            lasted: list[float] = []
            answers: Counter[str] = Counter()
            probes: list[float] = []

            async def loris(trickle_body: bool) -> None:
                start = trio.current_time()
                head = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                if trickle_body:
                    head = chat(body("slow")).replace(b"content-length: ", b"content-length: 1")
                    head = head[: head.index(b"\r\n\r\n") + 4]
                stream = await raw_http.connect(server.url)
                received = b""
                with trio.move_on_after(30):  # bound: far past both timeouts
                    async with stream:
                        await stream.send_all(head)
                        try:
                            while True:
                                await stream.send_all(b"x" if trickle_body else b"x-slow: 1\r\n")
                                with trio.move_on_after(0.5):
                                    if not (chunk := await stream.receive_some()):
                                        break
                                    received += chunk
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                lasted.append(trio.current_time() - start)
                responses, _ = raw_http.parse(received)
                judge(answers, responses, b"")

            async def big(chunked: bool) -> None:
                with trio.fail_after(30):
                    async with await raw_http.connect(server.url) as stream:
                        head = chat({}).split(b"\r\n\r\n")[0]
                        if chunked:
                            head = head.replace(b"content-length: 2", b"transfer-encoding: chunked")
                        else:
                            head = head.replace(b"content-length: 2", b"content-length: 52428800")
                        await stream.send_all(head + b"\r\n\r\n")
                        received = b""
                        try:
                            for _ in range(50):  # 50 MiB at most, in 1 MiB pieces
                                piece = b"x" * (1 << 20)
                                await stream.send_all(
                                    b"100000\r\n" + piece + b"\r\n" if chunked else piece
                                )
                                with trio.move_on_after(0.01):
                                    received += await stream.receive_some()
                                if raw_http.parse(received)[0]:
                                    break
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                        with trio.move_on_after(5):
                            while not raw_http.parse(received)[0] and (
                                chunk := await stream.receive_some()
                            ):
                                received += chunk
                        judge(answers, *raw_http.parse(received))

            async def probe() -> None:
                for _ in range(10):
                    start = trio.current_time()
                    if await health(server.url) == 200:
                        probes.append(trio.current_time() - start)
                    await trio.sleep(0.3)

            async with trio.open_nursery() as clients:
                for n in range(slowloris):
                    clients.start_soon(loris, n % 2 == 1)
                for n in range(oversized):
                    clients.start_soon(big, n % 2 == 1)
                await trio.sleep(0.5)
                clients.start_soon(probe)
            rss_after = memory_kb(server.pid)
            alive = server.process.poll() is None
        nursery.cancel_scope.cancel()
    return {
        **{k.lower(): float(v) for k, v in timeouts.items()},
        "slow_connections": slowloris,
        "slow_connection_lifetime": percentiles(lasted),
        "oversized_bodies": oversized,
        "answers": dict(answers.most_common()),
        "health_during": percentiles(probes),
        "health_answered": len(probes),
        "server_rss_before_mb": mb(rss_before),
        "server_rss_after_mb": mb(rss_after),
        "server_alive": alive,
    }


async def idle_connections(root: Path, limit: int, excess: int) -> dict[str, Any]:
    """``limit + excess`` connections that send nothing: the excess must get a 503 at once,
    the rest be closed after the keep-alive timeout; then the server answers again."""
    env = {"MAX_CONNECTIONS": str(limit), "KEEP_ALIVE_TIMEOUT": "2"}
    mock = MockAnthropic()
    answers: Counter[str] = Counter()
    closed_after: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            fds_before = open_fds(server.pid)
            streams = [await raw_http.connect(server.url) for _ in range(limit + excess)]
            opened = trio.current_time()
            await trio.sleep(0.5)
            fds_full = open_fds(server.pid)
            during = await health(server.url)

            async def watch(stream: trio.SocketStream) -> None:
                received = b""
                with trio.move_on_after(20):
                    try:
                        while chunk := await stream.receive_some():
                            received += chunk
                    except trio.BrokenResourceError:
                        pass
                closed_after.append(trio.current_time() - opened)
                judge(answers, *raw_http.parse(received))
                await stream.aclose()

            async with trio.open_nursery() as watchers:
                for stream in streams:
                    watchers.start_soon(watch, stream)
            after = await health(server.url)
            fds_after = open_fds(server.pid)
        nursery.cancel_scope.cancel()
    return {
        "max_connections": limit,
        "connections": limit + excess,
        "keep_alive_timeout": 2.0,
        "answers": dict(answers.most_common()),
        "closed_after": percentiles(closed_after),
        "health_while_full": during,
        "health_after": after,
        "server_fds": {"before": fds_before, "full": fds_full, "after": fds_after},
    }


async def slow_reader(root: Path, answer_mb: int, seconds: float) -> dict[str, Any]:
    """A streamed answer of ``answer_mb`` MB read at about 100 KB/s for ``seconds``: the
    server must hold back (back-pressure), not buffer the answer in memory."""
    size = answer_mb * 1_000_000
    mock = MockAnthropic(default=Reply.text("r" * size, pieces=size // 1000))
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root) as server:
            sampler = Sampler(server.pid)
            rss_before = memory_kb(server.pid)
            await nursery.start(sampler.run)
            read = 0
            async with await raw_http.connect(server.url) as stream:
                await stream.send_all(chat(body("slow reader", stream=True)))
                with trio.move_on_after(seconds):
                    while chunk := await stream.receive_some(10_000):
                        read += len(chunk)
                        await trio.sleep(0.1)
            upstream_done = bool(mock.messages) and mock.messages[0].finished is not None
            _, cli_gone_s = await settled(lambda: processes_under(root), 15)
            left, _ = await settled(lambda: processes_in(root / "runs"), 1)
            alive = server.process.poll() is None
        nursery.cancel_scope.cancel()
    return {
        "answer_mb": answer_mb,
        "read_mb": round(read / 1e6, 2),
        "seconds": seconds,
        "upstream_sent_whole_answer": upstream_done,
        "server_rss_before_mb": mb(rss_before),
        **sampler.figures(),
        "cli_gone_after_reader_left_s": cli_gone_s,
        "leftover_processes": len(left),
        "server_alive": alive,
    }
