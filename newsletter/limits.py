"""Sending limits: messages per second and accepted messages per hour.

Per-second pacing is aiolimiter's leaky bucket. The hourly cap counts what the journal
says was accepted in the last hour (every edition, every process), plus this run's
messages in flight, so a resume or a second run cannot exceed it. Every wait races the
stop signal: a stopped run never sends one more message because it was waiting.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiolimiter import AsyncLimiter

from newsletter.store import Store

HOUR = 3600.0
RELOAD = 10.0  # seconds between journal reads: other processes' sends show up this late


async def race(waiting: Awaitable[object], stop: asyncio.Event) -> bool:
    """Wait for `waiting` unless `stop` comes first; True when it completed."""
    if stop.is_set():
        return False
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return True
    task.cancel()
    return False


class HourlyCap:
    """At most `cap` accepted messages in any `period` seconds, counted from the journal."""

    def __init__(self, store: Store, cap: int, *, period: float = HOUR,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.cap, self.period, self.clock = store, cap, period, clock
        self.accepted: collections.deque[float] = collections.deque()
        self.in_flight = 0
        self.loaded = -RELOAD

    def _reload(self, now: float) -> None:
        since = datetime.fromtimestamp(now - self.period, UTC).isoformat(timespec="seconds")
        self.accepted = collections.deque(
            datetime.fromisoformat(stamp).timestamp() for stamp in self.store.sent_since(since))
        self.loaded = now

    def delay(self) -> float:
        """Seconds until one more message fits (0: now)."""
        now = self.clock()
        if now - self.loaded >= RELOAD:
            self._reload(now)
        while self.accepted and self.accepted[0] <= now - self.period:
            self.accepted.popleft()
        if len(self.accepted) + self.in_flight < self.cap:
            return 0.0
        if not self.accepted:  # all of it in flight: wait for an answer
            return 0.05
        return max(0.05, self.accepted[0] + self.period - now)

    def settle(self, accepted: bool) -> None:
        """A message reserved by `acquire` got its answer."""
        self.in_flight -= 1
        if accepted:
            self.accepted.append(self.clock())


class Limits:
    """Per-second pacing and the hourly cap, both interruptible by `stop`."""

    def __init__(self, store: Store, *, rate: float, per_hour: int, burst: int,
                 stop: asyncio.Event, period: float = HOUR,
                 on_wait: Callable[[float], None] = lambda seconds: None) -> None:
        self.stop, self.on_wait = stop, on_wait
        self.pacer: AsyncLimiter | None = None
        if rate > 0:
            size = max(1.0, min(float(burst), rate))  # bursts no larger than the pool
            self.pacer = AsyncLimiter(size, size / rate)
        self.hourly = HourlyCap(store, per_hour, period=period) if per_hour > 0 else None
        self.waits = 0  # times the hourly cap made the run wait

    async def acquire(self) -> bool:
        """Room for one more message; False when the run stopped meanwhile."""
        if self.hourly is not None:
            while (delay := self.hourly.delay()) > 0:
                self.waits += 1
                self.on_wait(delay)
                if not await race(asyncio.sleep(delay), self.stop):
                    return False
            self.hourly.in_flight += 1
        if self.pacer is not None and not await race(self.pacer.acquire(), self.stop):
            self.settle(accepted=False)
            return False
        return True

    def settle(self, *, accepted: bool) -> None:
        if self.hourly is not None:
            self.hourly.settle(accepted)
