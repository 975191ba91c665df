"""ACME rate limits: fixed one-hour windows per key, counted through ``AcmeRepository``.

The counter lives in the database so every node shares it. Must not import
aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from datetime import timedelta

from server.ca.acme.ports import AcmeRepository
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock

__all__ = ["RateLimiter"]


class RateLimiter:
    """Fixed one-hour windows per key, counted in the database (shared by every node)."""

    def __init__(self, repo: AcmeRepository, clock: Clock, limit: int) -> None:
        self._repo = repo
        self._clock = clock
        self._limit = limit

    async def hit(self, key: str, what: str) -> None:
        """Count one event for ``key``; ``limit`` <= 0 disables the limit.

        Raises:
            EngineError: RATE_LIMITED (with retry_after up to the next window).
        """
        if self._limit <= 0:
            return
        now = self._clock.now()
        start = now.replace(minute=0, second=0, microsecond=0)
        if not await self._repo.hit_rate_limit(key, window_start=start, limit=self._limit):
            retry = int((start + timedelta(hours=1) - now).total_seconds()) + 1
            raise EngineError(
                ProblemKind.RATE_LIMITED,
                f"too many {what}: at most {self._limit} per hour",
                retry_after=retry,
            )
