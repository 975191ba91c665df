"""The bounded queue of challenge validations running in the background, per process.

Every challenge POST starts one validation task; at most ``concurrency`` run at once
and at most ``limit`` wait or run, so a flood of challenge POSTs costs bounded
memory and the client is told to come back (``rateLimited``) instead. One queue is
shared by every ACME directory of a process. Must not import aiohttp, josepy or
sqlalchemy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final

from server.ca.errors import EngineError, ProblemKind

__all__ = ["ValidationQueue"]

# A queued validation takes seconds (one attempt is bounded by the validation
# timeout); a client told the queue is full retries after this many.
_RETRY_AFTER_FULL: Final = 10


class ValidationQueue:
    """Background validations: ``concurrency`` at once, ``limit`` queued or running."""

    def __init__(self, *, limit: int, concurrency: int) -> None:
        self._limit = max(1, limit)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._tasks: set[asyncio.Task[None]] = set()

    def check_room(self) -> None:
        """Refuse when the queue is full.

        Raises:
            EngineError: RATE_LIMITED (with retry_after).
        """
        if len(self._tasks) >= self._limit:
            raise EngineError(
                ProblemKind.RATE_LIMITED,
                f"too many validations in progress (at most {self._limit}); try again later",
                retry_after=_RETRY_AFTER_FULL,
            )

    def submit(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work()`` in the background once a slot is free (call ``check_room`` first)."""

        async def run() -> None:
            async with self._slots:
                await work()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait until every queued validation has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every queued or running validation (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
