"""Brute-force limits on EST password login: failed-login budgets and the PBKDF2 bound.

Every password check first takes a token from two buckets, one of the client
address and one of the account (label, username), stored through the
repository so every process and node draws on the same ones; a right password
gives both tokens back, a wrong one keeps them. So N parallel wrong passwords
against a budget of B verify at most B, and refused attempts (one bucket
empty) take nothing from the other bucket. A login from the verified-password
cache runs no PBKDF2 and so takes nothing: it reads both buckets in one query and
is refused while either is empty (``check_open``), so a lockout holds for it too,
at the cost of a read rather than a take and a give-back. Separately, at most
``concurrent_checks`` PBKDF2 verifications run at once in this process.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from server.ca.errors import EngineError, ProblemKind
from server.ca.est.ports import EstRepository, LoginBudget
from server.ca.ports import Clock

__all__ = ["LoginLimits", "Logins"]

log = logging.getLogger(__name__)

_PRUNE_EVERY: Final = 60.0
# What a client behind a saturated verifier is told: one PBKDF2 check takes ~0.2 s.
_BUSY_RETRY: Final = 2


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """Failed logins allowed a minute per client address and per account; 0 turns one off.

    The address budget is the larger one by default: one attacked account behind a
    shared NAT spends at most its own budget of the address's, so the other devices
    there keep logging in; spraying many accounts from one address is what exhausts it.
    ``concurrent_checks`` bounds PBKDF2 verifications at once per process (0: the CPU
    count); a check that finds no free slot within ``check_wait`` seconds is refused.
    """

    per_address: int = 30
    per_account: int = 10
    concurrent_checks: int = 0
    check_wait: float = 2.0

    def verifier_slots(self) -> int:
        """Return how many PBKDF2 checks may run at once."""
        return self.concurrent_checks or os.cpu_count() or 1


def _digest(kind: str, *parts: str) -> str:
    return f"{kind}:" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class Logins:
    """Failed-login budgets over the EST repository, and this process's PBKDF2 slots."""

    def __init__(
        self,
        repo: EstRepository,
        limits: LoginLimits,
        *,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._limits = limits
        self._clock = clock
        self._monotonic = monotonic
        self._verifiers = asyncio.Semaphore(limits.verifier_slots())
        self._pruned_at = monotonic()

    def budgets(self, *, client: str, label: str, username: str) -> tuple[LoginBudget, ...]:
        """Return the buckets a login attempt draws on (the address's first)."""
        out = []
        for per_minute, key in (
            (self._limits.per_address, _digest("a", client)),
            (self._limits.per_account, _digest("u", label, username)),
        ):
            if per_minute > 0:
                out.append(LoginBudget(key=key, rate=per_minute / 60, burst=per_minute))
        return tuple(out)

    async def reserve(self, budgets: Sequence[LoginBudget], *, attempt: str) -> None:
        """Take a token from every bucket before a password is checked.

        ``attempt`` names the login in the log line of a refusal (account and address).

        Raises:
            EngineError: RATE_LIMITED (with retry_after) when a bucket is empty;
                then no token is taken.
        """
        if not budgets:
            return
        now = self._clock.now().timestamp()
        await self._prune(now)
        refused = await self._repo.take_login_tokens(budgets, now=now)
        if refused:
            self._refuse(budgets, refused, now, attempt=attempt)

    async def release(self, budgets: Sequence[LoginBudget]) -> None:
        """Give back the tokens of an attempt that did not fail (a right password, an error)."""
        if budgets:
            await self._repo.return_login_tokens([b.key for b in budgets])

    async def check_open(self, budgets: Sequence[LoginBudget], *, attempt: str) -> None:
        """Refuse when a bucket is empty, taking nothing (logins that need no PBKDF2).

        Raises:
            EngineError: RATE_LIMITED (with retry_after).
        """
        if not budgets:
            return
        now = self._clock.now().timestamp()
        stored = await self._repo.get_login_budgets([b.key for b in budgets])
        empty = [s for s in stored if s.level(now) < 1]
        if empty:
            self._refuse(budgets, empty, now, attempt=attempt)

    async def verify(self, check: Callable[[], bool]) -> bool:
        """Run ``check`` (a PBKDF2 verification) in a thread once a verifier slot is free.

        Raises:
            EngineError: UNAVAILABLE (with retry_after) when no slot frees up in time;
                ``check`` did not run.
        """
        try:
            async with asyncio.timeout(self._limits.check_wait):
                await self._verifiers.acquire()
        except TimeoutError:
            log.warning("EST: every PBKDF2 verifier busy for %.1fs", self._limits.check_wait)
            raise EngineError(
                ProblemKind.UNAVAILABLE,
                "too many password checks in progress; try again shortly",
                retry_after=_BUSY_RETRY,
            ) from None
        try:
            return await asyncio.to_thread(check)
        finally:
            self._verifiers.release()

    def _refuse(
        self,
        budgets: Sequence[LoginBudget],
        empty: Sequence[LoginBudget],
        now: float,
        *,
        attempt: str,
    ) -> None:
        # Rate and burst are today's settings, not what the stored row was written with.
        wanted = {b.key: b for b in budgets}
        waits = {
            b.key: replace(b, rate=wanted[b.key].rate, burst=wanted[b.key].burst).wait(now)
            for b in empty
            if b.key in wanted
        }
        address = budgets[0].key if self._limits.per_address > 0 else None
        who = "this client address" if address in waits else "this account"
        retry_after = max([*waits.values(), 1])
        log.warning("EST: login %s refused: %s out of failed logins", attempt, who)
        raise EngineError(
            ProblemKind.RATE_LIMITED,
            f"too many failed logins for {who}; try again later",
            retry_after=retry_after,
        )

    async def _prune(self, now: float) -> None:
        # Buckets that refilled read as full: drop them about once a minute per process.
        if self._monotonic() - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = self._monotonic()
        dropped = await self._repo.prune_login_budgets(now=now)
        if dropped:
            log.debug("EST: dropped %d refilled failed-login buckets", dropped)
