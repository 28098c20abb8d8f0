"""Latency of the server in front of the real CLI and the mock API (no network, no keys).

Reports, over N requests each: time to first token and total time for streamed requests,
total time for non-streamed ones, and how long after a client disconnect the upstream
stream is aborted. Run with ``make bench``.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

import httpx
import trio
from harness import serving

from tests.mock_anthropic import MockAnthropic, Reply

N = 10
CHAT = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    print(
        f"{name:<34} median {statistics.median(ms):7.1f} ms"
        f"   min {ms[0]:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})"
    )


async def timed(fn: Callable[[], Awaitable[float | None]]) -> list[float]:
    out = []
    for _ in range(N):
        value = await fn()
        if value is not None:
            out.append(value)
    return out


async def main() -> None:
    mock = MockAnthropic(default=Reply.text("one two three four five", pieces=5))
    async with serving(mock) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def completion() -> float:
            start = trio.current_time()
            response = await http.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200
            return trio.current_time() - start

        ttft: list[float] = []

        async def streamed() -> float:
            start = trio.current_time()
            first = None
            body = {**CHAT, "stream": True}
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if first is None and '"content":"one' in line:
                        first = trio.current_time() - start
            assert first is not None
            ttft.append(first)
            return trio.current_time() - start

        async def post_chat() -> None:
            await http.post("/v1/chat/completions", json=CHAT)

        async def abort() -> float | None:
            mock.script(Reply.text("x" * 50, pieces=50, delay=0.1))
            async with trio.open_nursery() as inner:
                inner.start_soon(post_chat)
                await mock.request_arrived.wait()
                await trio.sleep(0.2)
                gone = trio.current_time()
                inner.cancel_scope.cancel()
            with trio.move_on_after(5):
                while mock.messages[-1].aborted_at is None:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            aborted = mock.messages[-1].aborted_at
            return None if aborted is None else aborted - gone

        report("non-streamed completion", await timed(completion))
        report("streamed completion (total)", await timed(streamed))
        report("streamed time to first token", ttft)
        report("disconnect -> upstream abort", await timed(abort))


if __name__ == "__main__":
    trio.run(main)
