"""In-memory ``server.ca.est.ports.EstRepository`` for engine tests: same contract, no database.

The EST twin of ``memory.py``'s ``MemoryRepository``, beside its SQL twin
``est_repository.py``; ``tests/server/store/test_est_repository.py`` runs one
contract over both. Imports only engine types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from server.ca import types
from server.ca.errors import EngineError, ProblemKind
from server.ca.est.ports import (
    EstLabel,
    EstUser,
    LoginBudget,
    PendingEnrollment,
    PendingId,
    PendingStatus,
)
from server.store.memory import MemoryAuditChain

__all__ = ["MemoryEstRepository"]


class MemoryEstRepository:
    """Dict-backed EST repository; one asyncio lock stands in for transactions."""

    def __init__(self, chain: MemoryAuditChain | None = None) -> None:
        self.chain = chain or MemoryAuditChain()
        self.labels: dict[str, EstLabel] = {}
        self.users: dict[tuple[str, str], EstUser] = {}
        self.pending: dict[PendingId, PendingEnrollment] = {}
        self.audit: list[types.AuditEvent] = self.chain.records
        self.login_budgets: dict[str, LoginBudget] = {}
        self._lock = asyncio.Lock()

    async def add_label(self, label: EstLabel, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            if label.name in self.labels:
                raise EngineError(
                    ProblemKind.CONFLICT, f"an EST label named {label.name!r} already exists"
                )
            # Stored labels read back as the SQL store returns them.
            self.labels[label.name] = replace(label, source="database")
            self.chain.append([audit])

    async def get_label(self, name: str) -> EstLabel | None:
        return self.labels.get(name)

    async def list_labels(self) -> Sequence[EstLabel]:
        return [self.labels[name] for name in sorted(self.labels)]

    async def remove_label(self, name: str, *, audit: types.AuditEvent) -> bool:
        async with self._lock:
            if self.labels.pop(name, None) is None:
                return False
            self.users = {k: u for k, u in self.users.items() if u.label != name}
            self.chain.append([audit])
            return True

    async def put_user(self, user: EstUser, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            key = (user.label, user.username)
            existing = self.users.get(key)
            # A reset keeps the account's creation time, as the SQL store's UPDATE does.
            self.users[key] = (
                user if existing is None else replace(user, created_at=existing.created_at)
            )
            self.chain.append([audit])

    async def get_user(self, label: str, username: str) -> EstUser | None:
        return self.users.get((label, username))

    async def list_users(self, label: str | None) -> Sequence[EstUser]:
        return [
            self.users[key]
            for key in sorted(self.users)
            if label is None or self.users[key].label == label
        ]

    async def remove_user(self, label: str, username: str, *, audit: types.AuditEvent) -> bool:
        async with self._lock:
            if self.users.pop((label, username), None) is None:
                return False
            self.chain.append([audit])
            return True

    async def add_pending(
        self, pending: PendingEnrollment, *, audit: types.AuditEvent | None = None
    ) -> None:
        async with self._lock:
            if pending.id in self.pending:
                raise EngineError(ProblemKind.CONFLICT, f"pending id {pending.id} exists")
            self.pending[pending.id] = pending
            if audit is not None:
                self.chain.append([audit])

    async def find_pending(
        self, label: str, requester: str, key_fingerprint: str
    ) -> PendingEnrollment | None:
        mine = [
            p
            for p in self.pending.values()
            if (p.label, p.requester, p.key_fingerprint) == (label, requester, key_fingerprint)
        ]
        return max(mine, key=lambda p: (p.created_at, p.id), default=None)

    async def get_pending(self, pending_id: PendingId) -> PendingEnrollment | None:
        return self.pending.get(pending_id)

    async def list_pending(self, status: PendingStatus | None) -> Sequence[PendingEnrollment]:
        return sorted(
            (p for p in self.pending.values() if status is None or p.status is status),
            key=lambda p: (p.created_at, p.id),
        )

    async def transition_pending(
        self,
        pending_id: PendingId,
        *,
        from_status: PendingStatus,
        to_status: PendingStatus,
        at: datetime,
        by: str | None = None,
        ca_id: types.CAId | None = None,
        serial: types.Serial | None = None,
        audit: types.AuditEvent | None = None,
    ) -> bool:
        async with self._lock:
            found = self.pending.get(pending_id)
            if found is None or found.status is not from_status:
                return False
            updated = replace(found, status=to_status)
            if by is not None:
                updated = replace(updated, decided_at=at, decided_by=by)
            if ca_id is not None:
                updated = replace(updated, ca_id=ca_id)
            if serial is not None:
                updated = replace(updated, serial=serial)
            self.pending[pending_id] = updated
            if audit is not None:
                self.chain.append([audit])
            return True

    # ------------------------------------------------------------------ failed-login budgets

    async def take_login_tokens(
        self, budgets: Sequence[LoginBudget], *, now: float
    ) -> Sequence[LoginBudget]:
        async with self._lock:
            taken: dict[str, LoginBudget] = {}
            refused: list[LoginBudget] = []
            for budget in budgets:
                stored = self.login_budgets.get(budget.key)
                if stored is None:
                    level, at = float(budget.burst), now
                else:
                    current = replace(stored, rate=budget.rate, burst=budget.burst)
                    level, at = current.level(now), max(now, stored.at)
                if level >= 1:
                    taken[budget.key] = replace(budget, tokens=level - 1, at=at)
                elif stored is not None:
                    refused.append(stored)
            if refused:
                return refused
            self.login_budgets |= taken
            return []

    async def return_login_tokens(self, keys: Sequence[str]) -> None:
        async with self._lock:
            for key in keys:
                stored = self.login_budgets.get(key)
                if stored is not None:
                    tokens = min(float(stored.burst), stored.tokens + 1)
                    self.login_budgets[key] = replace(stored, tokens=tokens)

    async def get_login_budgets(self, keys: Sequence[str]) -> Sequence[LoginBudget]:
        return [self.login_budgets[k] for k in keys if k in self.login_budgets]

    async def prune_login_budgets(self, *, now: float) -> int:
        async with self._lock:
            full = [k for k, b in self.login_budgets.items() if b.at + b.burst / b.rate < now]
            for key in full:
                del self.login_budgets[key]
            return len(full)
