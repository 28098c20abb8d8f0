"""Stress scenarios that run the real Claude Code CLI: disconnects, signals, crashes, faults
and load, each against ``python -m wrapper`` as a process of its own and the mock API.

Each scenario is ``async def name(root, **size) -> figures``: it works below ``root``
(a fresh directory), every loop and wait is bounded, and it returns plain numbers and
counts for bench/stress.py to print, check and write as JSON. Requests are tagged
(``[name]`` in the user message) so the mock's record of each is found again.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.harness import FaultyMock, server_process
from bench.probes import (
    Sampler,
    chat,
    health,
    mb,
    memory_kb,
    percentiles,
    places,
    settled,
)
from tests import raw_http
from tests.conftest import processes_in, processes_under, transcripts
from tests.mock_anthropic import MockAnthropic, Recorded, Reply
from wrapper.claude import BUNDLED_CLI

MODEL = "claude-sonnet-4-5"
# 40 chunks 0.05 s apart: a 2 s answer, left long before its end.
SLOW = Reply.text("x" * 40, pieces=40, delay=0.05)
# 100 chunks 0.1 s apart: a 10 s answer, still running when the server is stopped.
LONG = Reply.text("y" * 100, pieces=100, delay=0.1)
# 20 chunks 0.1 s apart: a 2 s answer that ends within a 3 s shutdown grace.
SHORT = Reply.text("z" * 20, pieces=20, delay=0.1)


def body(tag: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"[{tag}]"}], **extra}


def upstream(mock: MockAnthropic, tag: str) -> Recorded | None:
    """The mock's record of the request tagged ``tag`` (its latest, if retried)."""
    found = [r for r in mock.messages if f"[{tag}]" in r.last_user_text]
    return found[-1] if found else None


async def until(condition: Any, within: float) -> bool:
    """Poll ``condition`` until true or ``within`` seconds pass; whether it became true."""
    with trio.move_on_after(within):
        while not condition():  # noqa: ASYNC110 - the mock's record has no event per request
            await trio.sleep(0.01)
    return bool(condition())


async def post(url: str, payload: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        return await http.post("/v1/chat/completions", json=payload, headers=headers)


async def stream_outcome(url: str, payload: dict[str, Any], frames: list[str]) -> str:
    """Stream a chat, keeping its data frames in ``frames``; how it ended: ``done``
    (``[DONE]``), an error frame's code, ``<status> <code>`` for an error answer, or
    ``cut`` (the connection ended without either)."""
    try:
        async with (
            httpx.AsyncClient(timeout=120) as http,
            http.stream("POST", f"{url}/v1/chat/completions", json=payload) as response,
        ):
            if response.status_code != 200:
                error = json.loads(await response.aread())["error"]
                return f"{response.status_code} {error['code']}"
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append(line.removeprefix("data: "))
    except httpx.HTTPError:
        pass
    if frames and frames[-1] == "[DONE]":
        return "done"
    if frames and "error" in (last := json.loads(frames[-1])):
        return str(last["error"]["code"])
    return "cut"


def leftovers(root: Path) -> dict[str, int]:
    return {
        "leftover_processes": len(processes_in(root)),
        "leftover_places": len(places(root / "runs")),
        "leftover_transcripts": len(transcripts(root)),
    }


async def disconnect_storm(root: Path, cycles: int, at_once: int) -> dict[str, Any]:
    """Clients that leave mid-answer, ``at_once`` at a time: every other one mid-stream
    (after its first token), the rest while waiting for a whole answer."""
    mock = MockAnthropic(default=SLOW)
    # A client's closed runs hold its share until their CLIs are closed: the per-client cap
    # is raised so the storm measures disconnects, not that cap.
    env = {"MAX_RUNS_PER_CLIENT": "100"}
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            mock.script(Reply.text("warm"))
            warm = await post(server.url, body("warm-up"))
            rss_before = memory_kb(server.pid)
            latencies: list[float] = []
            not_aborted = refused = 0
            limiter = trio.CapacityLimiter(at_once)

            async def cycle(n: int) -> None:
                nonlocal not_aborted, refused
                tag = f"storm {n}"
                async with limiter:
                    gone = await leave(server.url, mock, tag, streamed=n % 2 == 0)
                    record = upstream(mock, tag)
                    await until(lambda: record is None or record.aborted_at is not None, 5)
                if gone is None:
                    refused += 1
                elif record is None or record.aborted_at is None:
                    not_aborted += 1
                else:
                    latencies.append(record.aborted_at - gone)

            with trio.fail_after(60 + cycles * 5):
                async with trio.open_nursery() as storm:
                    for n in range(cycles):
                        storm.start_soon(cycle, n)
            _, settle_s = await settled(lambda: processes_in(root / "runs"), 5)
            left = leftovers(root)
            rss_after = memory_kb(server.pid)
            mock.script(Reply.text("after the storm"))
            final = await post(server.url, body("after"))
            alive = server.process.poll() is None
        nursery.cancel_scope.cancel()
    return {
        "cycles": cycles,
        "at_once": at_once,
        "warm_up_status": warm.status_code,
        "refused_or_never_started": refused,
        "upstream_aborted": len(latencies),
        "upstream_not_aborted": not_aborted,
        "abort_latency": percentiles(latencies),
        **left,
        "settle_s": settle_s,
        "server_rss_before_mb": mb(rss_before),
        "server_rss_after_mb": mb(rss_after),
        "final_status": final.status_code,
        "server_alive": alive,
    }


async def leave(url: str, mock: MockAnthropic, tag: str, *, streamed: bool) -> float | None:
    """Send a chat on a raw socket and close it mid-answer: when it was closed, or None
    when the answer never got under way (refused, or no upstream request within 30 s)."""
    async with await raw_http.connect(url) as stream:
        await stream.send_all(chat(body(tag, stream=streamed)))
        if streamed:
            received = b""
            with trio.move_on_after(30):
                while b'"content":"x' not in received:
                    if received.startswith(b"HTTP/1.1 ") and not received.startswith(
                        b"HTTP/1.1 200"
                    ):
                        return None
                    if not (chunk := await stream.receive_some()):
                        return None
                    received += chunk
            if b'"content":"x' not in received:
                return None
        else:
            if not await until(lambda: upstream(mock, tag) is not None, 30):
                return None
            await trio.sleep(0.1)
        return trio.current_time()


async def sigterm(root: Path, streams: int, queued: int) -> dict[str, Any]:
    """SIGTERM while ``streams`` streams run (half of them short enough to end within the
    grace) and ``queued`` more wait for a run slot."""
    mock = MockAnthropic(default=LONG)
    mock.script(*[SHORT, LONG] * (streams // 2))
    env = {
        "MAX_CONCURRENT_RUNS": str(streams),
        "MAX_QUEUED_RUNS": str(queued),
        "MAX_RUNS_PER_CLIENT": str(streams + queued),
        "SHUTDOWN_GRACE": "3",
    }
    outcomes: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            frames: list[list[str]] = [[] for _ in range(streams + queued)]
            ended: set[int] = set()

            async def one(n: int) -> None:
                outcomes.append(
                    await stream_outcome(server.url, body(f"s{n}", stream=True), frames[n])
                )
                ended.add(n)

            with trio.fail_after(120):
                async with trio.open_nursery() as clients:
                    for n in range(streams):
                        clients.start_soon(one, n)
                    started = await until(
                        lambda: all(frames[n] or n in ended for n in range(streams)), 90
                    )
                    for n in range(streams, streams + queued):
                        clients.start_soon(one, n)
                    await trio.sleep(0.5)  # the queued ones reach the gate
                    running = len(processes_under(root))
                    server.process.send_signal(signal.SIGTERM)
                    signalled = trio.current_time()
                    code = await server.process.wait()
                    exit_s = trio.current_time() - signalled
            left, settle_s = await settled(lambda: processes_in(root), 3)
        nursery.cancel_scope.cancel()
    return {
        "streams": streams,
        "queued": queued,
        "all_streaming_before_signal": started,
        "cli_processes_at_signal": running,
        "outcomes": dict(Counter(outcomes)),
        "exit_code": code,
        "exit_after_signal_s": round(exit_s, 2),
        "leftover_processes": len(left),
        "settle_s": settle_s,
        "upstream_unfinished_not_aborted": sum(
            r.finished is None and r.aborted_at is None for r in mock.messages
        ),
    }


async def kill_9(root: Path, sessions: int) -> dict[str, Any]:
    """kill -9 of the server while each of ``sessions`` sessions is streaming its second
    turn; then a restart and a third turn of each. Reports what the table and the context
    Claude received say of the interrupted turn (measured, not judged)."""
    mock = MockAnthropic(default=Reply.text("first answer"))
    ids = [f"stress-session-{n}" for n in range(sessions)]
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root) as server:
            first = [
                (await post(server.url, body(f"{s} turn 1", session_id=s))).status_code for s in ids
            ]
            mock.default = LONG
            frames: list[list[str]] = [[] for _ in ids]
            with trio.fail_after(60):
                async with trio.open_nursery() as clients:
                    for s, got in zip(ids, frames, strict=True):
                        payload = body(f"{s} turn 2", session_id=s, stream=True)
                        clients.start_soon(stream_outcome, server.url, payload, got)
                    await until(lambda: all(len(f) >= 2 for f in frames), 45)
                    running = len(processes_under(root))
                    server.process.send_signal(signal.SIGKILL)
                    killed = trio.current_time()
                    await server.process.wait()
                    clients.cancel_scope.cancel()
        left, _ = await settled(lambda: processes_in(root), 5)
        orphan_s = round(trio.current_time() - killed, 3)  # from the kill, not the wait
        turn_2 = [upstream(mock, f"{s} turn 2") for s in ids]
        await until(lambda: all(r is None or r.aborted_at or r.finished for r in turn_2), 3)
        aborts = [r.aborted_at - killed for r in turn_2 if r is not None and r.aborted_at]
        finished_upstream = sum(r is not None and r.finished is not None for r in turn_2)
        database = root / "home" / ".local" / "state" / "claude-wrapper" / "sessions.sqlite3"
        integrity = await trio.to_thread.run_sync(integrity_check, database)
        mock.default = Reply.text("third answer")
        async with server_process(mock.url, root) as server:
            third, counts, interrupted_seen, context = [], [], 0, []
            for s in ids:
                third.append(
                    (await post(server.url, body(f"{s} turn 3", session_id=s))).status_code
                )
                record = upstream(mock, f"{s} turn 3")
                if record is not None:
                    context.append(len(record.turns))
                    interrupted_seen += f"[{s} turn 2]" in record.all_text
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    row = (await http.get(f"/v1/sessions/{s}")).json()
                counts.append(row.get("message_count"))
        nursery.cancel_scope.cancel()
    return {
        "sessions": sessions,
        "first_turn_statuses": dict(Counter(first)),
        "cli_processes_at_kill": running,
        "leftover_processes": len(left),
        "orphans_gone_after_s": orphan_s,
        "upstream_aborted_after_kill": percentiles(aborts),
        "upstream_finished_by_orphans": finished_upstream,
        "integrity_check": integrity,
        "third_turn_statuses": dict(Counter(third)),
        # After a rollback: turn 1 (question, answer) and turn 3's question, 3 messages.
        "context_messages_seen_by_claude": context,
        "interrupted_turn_in_context": interrupted_seen,
        "table_message_counts_after": counts,
    }


def integrity_check(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


# Upstream faults the mock plays; ``after`` counts the messages of its answer it sends
# (the status line, then SSE events: 3 is mid-text).
UPSTREAM_FAULTS: list[tuple[str, Reply | tuple[str, int]]] = [
    ("429", Reply.error(429, "rate_limit_error", headers=(("retry-after", "7"),))),
    ("500", Reply.error(500, "api_error")),
    ("529", Reply.error(529, "overloaded_error")),
    ("overloaded mid-stream", Reply.text("a b c d", pieces=4, fail_after=2)),
    ("hang", ("hang", 0)),
    ("stall mid-stream", ("stall", 4)),
    ("drop mid-stream", ("drop", 4)),
]


async def upstream_faults(root: Path, run_timeout: float) -> dict[str, Any]:
    """Each upstream fault, asked for whole and streamed; then a good request. Every
    answer must be an envelope (an error frame when streamed) within the timeout."""
    mock = FaultyMock()
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, MAX_TIMEOUT=f"{run_timeout}s") as server:
            for name, fault in UPSTREAM_FAULTS:
                for _ in range(2):
                    if isinstance(fault, Reply):
                        mock.script(fault)
                    else:
                        mock.faults.append(fault)
                both = await both_ways(server.url, name)
                results |= {f"{name} ({way})": answer for way, answer in both.items()}
            results["next request"] = await fault_answer(server.url, "next", False)
            await settled(lambda: processes_in(root / "runs"), 5)
            alive = server.process.poll() is None
        nursery.cancel_scope.cancel()
    return {"timeout_s": run_timeout, "cases": results, **leftovers(root), "server_alive": alive}


async def both_ways(url: str, tag: str) -> dict[str, dict[str, Any]]:
    """``fault_answer`` for the request whole and streamed, both at once."""
    answers: dict[str, dict[str, Any]] = {}

    async def one(way: str) -> None:
        answers[way] = await fault_answer(url, f"{tag} {way}", way == "streamed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "whole")
        nursery.start_soon(one, "streamed")
    return answers


async def fault_answer(url: str, tag: str, streamed: bool) -> dict[str, Any]:
    """Status, error code (or ``ok``), whether it was an envelope, and seconds taken."""
    start = trio.current_time()
    if streamed:
        frames: list[str] = []
        outcome = await stream_outcome(url, body(tag, stream=True), frames)
        status, code = (200, outcome) if " " not in outcome else outcome.split(" ", 1)
        envelope = outcome != "cut"
        code = "ok" if code == "done" else code
    else:
        response = await post(url, body(tag))
        status = response.status_code
        payload = response.json()
        envelope = status == 200 or set(payload.get("error", {})) >= {"message", "type", "code"}
        code = "ok" if status == 200 else payload["error"]["code"]
    seconds = round(trio.current_time() - start, 2)
    return {"status": int(status), "code": code, "envelope": envelope, "seconds": seconds}


# Fake CLIs (``cli_path``), as shell scripts; {real} is the bundled CLI.
FAKE_CLIS = {
    "missing": None,
    "crashes at start": "#!/bin/sh\necho 'fake CLI: cannot start' >&2\nexit 3\n",
    # Killed 0.8 s after its start: a cold start takes ~0.4 s, so mid-way into a 2 s answer.
    "crashes mid-run": '#!/bin/sh\nexec timeout -s KILL 0.8 "{real}" "$@"\n',
    "wedged": "#!/bin/sh\nexec sleep 3600\n",
}


async def cli_faults(root: Path, run_timeout: float) -> dict[str, Any]:
    """A server per broken CLI: each request must get an envelope within the timeout,
    leave no process behind, and the server must stay up (``/health``)."""
    mock = MockAnthropic(default=SLOW)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        for name, script in FAKE_CLIS.items():
            path = root / f"fake-cli-{name.replace(' ', '-')}"
            if script is not None:
                path.write_text(script.format(real=BUNDLED_CLI))
                path.chmod(0o700)
            env = {"CLAUDE_CLI_PATH": str(path), "MAX_TIMEOUT": f"{run_timeout}s"}
            async with server_process(mock.url, root, **env) as server:
                case: dict[str, Any] = await both_ways(server.url, name)
                left, _ = await settled(lambda: processes_in(root / "runs"), 5)
                case["leftover_processes"] = len(left)
                case["health_after"] = await health(server.url)
                results[name] = case
        nursery.cancel_scope.cancel()
    return {"timeout_s": run_timeout, "cases": results}


async def load(root: Path, requests: int, slots: int, queue: int) -> dict[str, Any]:
    """``requests`` clients at once (an API key each) against ``slots`` run slots and a
    queue of ``queue``: the excess must get fast 503s with ``Retry-After``, the rest
    their answers; peak memory of the server and of its CLIs."""
    # 3 s answers: every request has arrived before the first slot is free again.
    mock = MockAnthropic(default=Reply.text("w" * 30, pieces=30, delay=0.1))
    keys = [f"stress-key-{n:03}-{'k' * 24}" for n in range(requests)]
    env = {
        "MAX_CONCURRENT_RUNS": str(slots),
        "MAX_QUEUED_RUNS": str(queue),
        "API_KEYS": ",".join(keys),
    }
    answers: list[tuple[int, float, str | None, str]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(mock.run)
        async with server_process(mock.url, root, **env) as server:
            sampler = Sampler(server.pid)
            await nursery.start(sampler.run)
            idle_kb = memory_kb(server.pid)

            async def one(n: int) -> None:
                start = trio.current_time()
                r = await post(server.url, body(f"load {n}"), authorization=f"Bearer {keys[n]}")
                code = "ok" if r.status_code == 200 else r.json()["error"]["code"]
                answers.append(
                    (r.status_code, trio.current_time() - start, r.headers.get("retry-after"), code)
                )

            start = trio.current_time()
            with trio.fail_after(300):
                async with trio.open_nursery() as clients:
                    for n in range(requests):
                        clients.start_soon(one, n)
            total = trio.current_time() - start
            sampler.sample()
            await settled(lambda: processes_in(root / "runs"), 5)
            left = leftovers(root)
            hwm = memory_kb(server.pid, "VmHWM")
        nursery.cancel_scope.cancel()
    refused = [a for a in answers if a[0] == 503]
    return {
        "requests": requests,
        "slots": slots,
        "queue": queue,
        "statuses": dict(Counter(f"{a[0]} {a[3]}" for a in answers)),
        "answered": sum(a[0] == 200 for a in answers),
        "refused_503": len(refused),
        "refused_with_retry_after": sum(a[2] is not None for a in refused),
        "refusal_latency": percentiles([a[1] for a in refused]),
        "answer_latency": percentiles([a[1] for a in answers if a[0] == 200]),
        "total_s": round(total, 2),
        "server_idle_rss_mb": mb(idle_kb),
        "server_peak_rss_mb_vmhwm": mb(hwm),
        **sampler.figures(),
        **left,
    }
