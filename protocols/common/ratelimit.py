"""Per-client token buckets, in memory, for request-rate limits on a front end.

Each process keeps its own buckets (with ``serve --workers N`` a client may
get up to N times the rate); the map is bounded: when it grows past
``max_clients`` the buckets that have refilled are dropped, then the oldest.
Pure: no aiohttp, no clock of its own beyond ``time.monotonic``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TokenBuckets"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate`` tokens a second per key, at most ``burst`` saved; a request takes one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._max = max_clients
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        """Return False when the limit is off (rate 0)."""
        return self.rate > 0

    def take(self, key: str) -> int:
        """Take one token for ``key``; return 0 if allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), at=now)
        else:
            bucket.tokens = self._level(bucket, now)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return self._wait(bucket.tokens)

    def peek(self, key: str) -> int:
        """Return the seconds until ``key`` has a token again (0: it has one), taking none."""
        bucket = self._buckets.get(key)
        if self.rate <= 0 or bucket is None:
            return 0
        tokens = self._level(bucket, self._clock())
        return 0 if tokens >= 1 else self._wait(tokens)

    def _level(self, bucket: _Bucket, now: float) -> float:
        """Tokens in ``bucket`` at ``now``: what it held plus the refill, at most the burst."""
        return min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)

    def _wait(self, tokens: float) -> int:
        return max(1, math.ceil((1 - tokens) / self.rate))

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self._max:
            del self._buckets[next(iter(self._buckets))]
