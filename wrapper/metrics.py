"""Prometheus metrics, hand-written: a few counters, gauges and histograms in text format.

Rules kept here:
- Labels have bounded values: the route's path template (``/v1/models/{model_id}``, or
  ``unmatched``), the method, the status. Never a raw path, model name or client.
- Everything is recorded once per request, from the same fields the access log prints,
  when the request ends (``observe``); gauges are read live when scraped.
- Exposition follows the Prometheus text format 0.0.4: ``# HELP``, ``# TYPE``, cumulative
  ``_bucket{le=...}`` lines ending with ``+Inf``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable

import attrs

# Request latency: from a cached error (ms) to a long agentic run (minutes).
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Time to first token: CLI start-up is ~0.35 s here; the API adds its own latency.
TTFT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)


@attrs.define
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = attrs.field()
    total: float = 0.0
    count: int = 0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        cumulative = 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {cumulative}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.total:.6f}"
        yield f"{name}_count{braces} {self.count}"


@attrs.define
class Metrics:
    """The server's metrics. Gauges are callables read at scrape time."""

    gauges: dict[str, tuple[str, Callable[[], float]]] = attrs.field(factory=dict)
    requests: Counter[tuple[str, str, int]] = attrs.field(factory=Counter)
    durations: dict[str, Histogram] = attrs.field(factory=dict)
    ttft: Histogram = attrs.field(factory=lambda: Histogram(TTFT_BUCKETS))
    tokens: Counter[str] = attrs.field(factory=Counter)
    cost_usd: float = 0.0
    rate_limited: int = 0

    def observe(
        self, route: str, method: str, status: int, seconds: float, fields: dict[str, object]
    ) -> None:
        self.requests[(route, method, status)] += 1
        self.durations.setdefault(route, Histogram(DURATION_BUCKETS)).observe(seconds)
        if status == 429 and fields.get("limited"):
            self.rate_limited += 1
        for direction in ("prompt_tokens", "completion_tokens"):
            value = fields.get(direction)
            if isinstance(value, int):
                self.tokens[direction.removesuffix("_tokens")] += value
        if isinstance(cost := fields.get("cost_usd"), float):
            self.cost_usd += cost
        if isinstance(ttft := fields.get("ttft"), float):
            self.ttft.observe(ttft)

    def render(self) -> str:
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}"))

        head("wrapper_requests_total", "counter", "HTTP requests by route, method and status.")
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(
                f'wrapper_requests_total{{route="{route}",method="{method}",status="{status}"}} {n}'
            )
        head("wrapper_request_duration_seconds", "histogram", "Time to the end of a response.")
        for route, histogram in sorted(self.durations.items()):
            out.extend(histogram.lines("wrapper_request_duration_seconds", f'route="{route}"'))
        head("wrapper_time_to_first_token_seconds", "histogram", "Streamed requests only.")
        out.extend(self.ttft.lines("wrapper_time_to_first_token_seconds", ""))
        head("wrapper_tokens_total", "counter", "Tokens reported by Claude Code.")
        for direction in ("prompt", "completion"):
            out.append(f'wrapper_tokens_total{{direction="{direction}"}} {self.tokens[direction]}')
        head("wrapper_cost_usd_total", "counter", "Cost reported by Claude Code, in USD.")
        out.append(f"wrapper_cost_usd_total {self.cost_usd:.6f}")
        head("wrapper_rate_limited_total", "counter", "Requests refused by the rate limiter.")
        out.append(f"wrapper_rate_limited_total {self.rate_limited}")
        for name, (text, read) in sorted(self.gauges.items()):
            head(name, "gauge", text)
            out.append(f"{name} {read():g}")
        return "\n".join(out) + "\n"
