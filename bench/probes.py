"""What the stress scenarios measure, read off /proc, the file system and raw sockets.

Every probe looks only below one scenario's root directory (its ``home``, ``runs`` and
state) or at one server process and its descendants, so scenarios running beside other
engineers' tests never count another's processes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from tests import conftest, raw_http

# How often the sampler reads memory: fine enough to catch a CLI's start-up peak.
SAMPLE_SECONDS = 0.05


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def children(pid: int) -> list[int]:
    """All descendants of ``pid``."""
    parents: dict[int, list[int]] = {}
    for p in _pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(p)
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of ``pid`` in KiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def mb(kb: float) -> float:
    return round(kb / 1024, 1)


@attrs.define
class Sampler:
    """Peaks of a server's RSS and of the summed RSS of its descendants (the CLIs, their
    launchers and sandboxes), sampled every ``SAMPLE_SECONDS`` while ``run`` runs."""

    pid: int
    server_peak_kb: int = 0
    children_peak_kb: int = 0
    children_peak_count: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.sample()
            await trio.sleep(SAMPLE_SECONDS)

    def sample(self) -> None:
        self.server_peak_kb = max(self.server_peak_kb, memory_kb(self.pid))
        kids = children(self.pid)
        self.children_peak_kb = max(self.children_peak_kb, sum(memory_kb(k) for k in kids))
        self.children_peak_count = max(self.children_peak_count, len(kids))

    def figures(self) -> dict[str, Any]:
        return {
            "server_peak_rss_mb": mb(self.server_peak_kb),
            "children_peak_rss_mb": mb(self.children_peak_kb),
            "children_peak_processes": self.children_peak_count,
        }


def places(runs: Path) -> list[Path]:
    """Places left in the workdir: stateless runs' ``run-*`` and kept ``sessions/*``."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if p.name != "sessions"]
    sessions = runs / "sessions"
    return found + (list(sessions.iterdir()) if sessions.is_dir() else [])


async def settled(probe: Any, within: float) -> tuple[list[Any], float]:
    """``tests.conftest.settled``: what ``probe`` last found, and how long it took."""
    start = trio.current_time()
    found = await conftest.settled(probe, within)
    return found, round(trio.current_time() - start, 3)


def percentiles(samples: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50, p99 and max of ``samples`` (seconds), in milliseconds; None when empty."""
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * scale, 1)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * scale, 1)}


def is_envelope(response: raw_http.Response) -> bool:
    """Whether an answer's body is exactly an OpenAI error envelope."""
    try:
        response.error()
    except (AssertionError, ValueError):
        return False
    return True


def request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    """One raw HTTP/1.1 request naming an address the server answers, closing after it."""
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close", *headers]
    if body or method == "POST":
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return "\r\n".join([*lines, "", ""]).encode() + body


def chat(payload: Any, *headers: str) -> bytes:
    return request("POST", "/v1/chat/completions", json.dumps(payload).encode(), *headers)


async def health(url: str) -> int:
    """The status of ``GET /health`` on a fresh connection (0 when nothing answers)."""
    try:
        with trio.fail_after(10):
            responses, _ = await raw_http.exchange(url, request("GET", "/health"))
    except (OSError, trio.TooSlowError):
        return 0
    return responses[0].status if responses else 0
