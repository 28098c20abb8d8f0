"""Traffic control: token buckets per client and route class, and the Claude Code run gate.

Rules kept here:
- A bucket holds ``burst`` tokens and gains ``per_minute / 60`` per second. It is refilled
  by arithmetic on the clock when it is used, never by a timer per bucket.
- The table of buckets is bounded: the least recently seen client goes first when it is
  full (``max_clients``), and a sweeper task drops buckets that have refilled completely,
  since a full bucket is the same as none. A flood of distinct addresses costs at most
  ``max_clients`` small entries.
- A client is its API key when it sent a valid one, else its address; ``X-Forwarded-For``
  is believed only when the peer is a configured proxy, and then the address read is the
  last one not itself a trusted proxy. A hop that is not an address ends the walk there
  (the address reached so far counts), so a client's text never becomes its identity.
- ``check`` with ``cost=0`` only asks: it refuses an empty bucket but takes nothing. Failed
  API keys use that: asked before the compare, charged after a wrong key.
- At most ``max_concurrent`` Claude Code runs at once; up to ``max_queued`` more wait;
  beyond that a request is refused at once with 503 instead of piling up.
- One client (its key's digest, else its address) holds at most ``max_per_client`` of
  those running and waiting places; its excess is refused at once with 429, so it cannot
  fill the queue in front of everyone else. Checked before the server-wide bound: the
  refusal names the client's own excess.
- A request for ``n`` runs at once (chat's ``n``) takes its ``n`` slots together: one such
  request at a time gathers slots (the others wait for their turn holding none), so two of
  them on a full server cannot each hold part of what the other needs. Its places count
  ``n`` against the client's cap; ``n`` above what the server could ever run for one
  client is refused by the planner (wrapper.plan).
- A slot is taken only around the run itself: callers enter ``slot()`` after everything
  that can refuse the request and after any session lock (wrapper.sessions).
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from wrapper.errors import BUSY_RETRY_AFTER, RateLimited, ServerBusy, TooManyRuns

# Enough for every client a small server sees at once; ~100 bytes each.
MAX_CLIENTS = 10_000
# The sweeper's period: idle clients are forgotten within a minute of refilling.
SWEEP_INTERVAL = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.define
class Bucket:
    tokens: float
    updated: float


@attrs.frozen
class Decision:
    """What one check found: the headers to send, whether to refuse."""

    limit: int
    remaining: int
    reset_after: float  # seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{self.reset_after:.3g}s",
        }


class RateLimiter:
    """Token buckets keyed by (route class, client)."""

    def __init__(
        self,
        limits: dict[str, tuple[float, float]],
        clock: Callable[[], float] = trio.current_time,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()

    def check(
        self, route_class: str, client: str, *, cost: int = 1, what: str = "Rate limit exceeded"
    ) -> Decision:
        """Take ``cost`` tokens, or raise ``RateLimited`` (its message opening with ``what``)
        with the wait until one is there."""
        per_minute, burst = self.limits[route_class]
        rate = per_minute / 60.0
        now = self.clock()
        key = (route_class, client)
        bucket = self.buckets.pop(key, None) or Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        self.buckets[key] = bucket  # most recently seen last
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / rate)
            raise RateLimited(
                f"{what}. Try again in {wait} second{'s' if wait != 1 else ''}.",
                retry_after=wait,
                headers=Decision(int(burst), 0, (burst - bucket.tokens) / rate).headers(),
            )
        bucket.tokens -= cost
        return Decision(int(burst), int(bucket.tokens), (burst - bucket.tokens) / rate)

    def sweep(self) -> None:
        """Forget buckets that have refilled: they hold nothing a new bucket would not."""
        now = self.clock()
        for key, bucket in list(self.buckets.items()):
            per_minute, burst = self.limits[key[0]]
            if bucket.tokens + (now - bucket.updated) * per_minute / 60.0 >= burst:
                del self.buckets[key]

    async def sweeper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.sweep()


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def client_address(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or from X-Forwarded-For behind a trusted proxy."""

    def trusted(ip: Address | None) -> bool:
        return ip is not None and any(ip in network for network in proxies)

    if not forwarded_for or not trusted(_address(peer)):
        return peer
    client = peer
    for hop in reversed([hop.strip() for hop in forwarded_for.split(",") if hop.strip()]):
        ip = _address(hop)
        if ip is None:  # what a trusted proxy did not write: nothing left of it is believed
            break
        client = str(ip)
        if not trusted(ip):
            break
    return client


def _address(hop: str) -> Address | None:
    """An address as proxies write it: bare, ``1.2.3.4:5678`` or ``[2001:db8::1]:5678``."""
    if hop.startswith("[") and "]" in hop:
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


class RunGate:
    """At most ``max_concurrent`` runs; at most ``max_queued`` waiting for a slot; at most
    ``max_per_client`` of both for one client."""

    def __init__(self, max_concurrent: int, max_queued: int, max_per_client: int) -> None:
        self.limiter = trio.CapacityLimiter(max_concurrent)
        self.max_queued = max_queued
        self.max_per_client = max_per_client
        self.waiting = 0
        self.clients: Counter[str] = Counter()  # runs held or awaited, per client
        self.gathering = trio.Lock()  # held by the one request gathering several slots

    @property
    def running(self) -> int:
        return int(self.limiter.borrowed_tokens)

    @asynccontextmanager
    async def slot(self, client: str, count: int = 1) -> AsyncIterator[None]:
        """``count`` run slots for ``client``, taken together, held for the context."""
        assert 1 <= count <= self.limiter.total_tokens, "the planner refuses more"
        if self.clients[client] + count > self.max_per_client:
            has = self.clients[client]
            raise TooManyRuns(
                f"This client already has {has} Claude Code runs running or waiting, and"
                f" {count} more would pass its maximum of {self.max_per_client}; try again"
                " when one has finished.",
                retry_after=BUSY_RETRY_AFTER,
            )
        if self.limiter.available_tokens == 0 and self.waiting >= self.max_queued:
            raise ServerBusy(
                f"All {int(self.limiter.total_tokens)} Claude Code slots are busy and"
                f" {self.waiting} requests are waiting; try again shortly.",
                retry_after=BUSY_RETRY_AFTER,
            )
        self.clients[client] += count
        held: list[object] = []
        try:
            self.waiting += 1
            try:
                if count == 1:
                    await self._take(held)
                else:
                    async with self.gathering:
                        while len(held) < count:
                            await self._take(held)
            finally:
                self.waiting -= 1
            yield
        finally:
            for borrower in held:
                self.limiter.release_on_behalf_of(borrower)
            self.clients[client] -= count
            if not self.clients[client]:
                del self.clients[client]

    async def _take(self, held: list[object]) -> None:
        borrower = object()  # one per slot: a task may hold several
        await self.limiter.acquire_on_behalf_of(borrower)
        held.append(borrower)
