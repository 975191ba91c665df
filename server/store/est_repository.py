"""SQL implementation of ``server.ca.est.ports.EstRepository`` (SQLite and PostgreSQL).

Core statements, one short transaction per write; SQLite writes go through a
write lock (optionally shared with the engine repository).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, Update, case, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from server.ca import types
from server.ca.errors import EngineError, ProblemKind
from server.ca.est.ports import (
    AuthMode,
    CsrAttr,
    EstLabel,
    EstOperation,
    EstUser,
    LoginBudget,
    PendingEnrollment,
    PendingId,
    PendingStatus,
)
from server.store import audit_chain, convert
from server.store.database import Database
from server.store.est_models import EstLabelRow, EstLoginBudgetRow, EstPendingRow, EstUserRow

__all__ = ["SqlEstRepository"]

_LABEL = cast(Table, EstLabelRow.__table__)
_USER = cast(Table, EstUserRow.__table__)
_PENDING = cast(Table, EstPendingRow.__table__)
_BUDGET = cast(Table, EstLoginBudgetRow.__table__)


def _label_to_domain(row: Row[Any]) -> EstLabel:
    attrs = (
        None
        if row.csrattrs is None
        else tuple(CsrAttr(oid=a["oid"], values=tuple(a.get("values", ()))) for a in row.csrattrs)
    )
    return EstLabel(
        name=row.name,
        ca=row.ca,
        profile=row.profile,
        auth_modes=frozenset(AuthMode(m) for m in row.auth_modes),
        trust_anchors_pem=row.trust_anchors_pem.encode(),
        approval_required=row.approval_required,
        allow_subject_change=row.allow_subject_change,
        csrattrs=attrs,
        source="database",
        dns_suffixes=tuple(row.dns_suffixes),
        allow_wildcard=row.allow_wildcard,
        ip_ranges=tuple(ipaddress.ip_network(n) for n in row.ip_ranges),
        uri_patterns=tuple(row.uri_patterns),
        email_domains=tuple(row.email_domains),
        subject_patterns=tuple(row.subject_patterns),
        max_days=row.max_days,
    )


def _label_from_domain(label: EstLabel, now: datetime) -> dict[str, Any]:
    return {
        "name": label.name,
        "ca": label.ca,
        "profile": label.profile,
        "auth_modes": sorted(str(m) for m in label.auth_modes),
        "trust_anchors_pem": label.trust_anchors_pem.decode(),
        "approval_required": label.approval_required,
        "allow_subject_change": label.allow_subject_change,
        "csrattrs": (
            None
            if label.csrattrs is None
            else [{"oid": a.oid, "values": list(a.values)} for a in label.csrattrs]
        ),
        "created_at": now,
        "dns_suffixes": list(label.dns_suffixes),
        "allow_wildcard": label.allow_wildcard,
        "ip_ranges": [str(n) for n in label.ip_ranges],
        "uri_patterns": list(label.uri_patterns),
        "email_domains": list(label.email_domains),
        "subject_patterns": list(label.subject_patterns),
        "max_days": label.max_days,
    }


def _user_to_domain(row: Row[Any]) -> EstUser:
    return EstUser(
        label=row.label,
        username=row.username,
        password_hash=row.password_hash,
        created_at=convert.aware(row.created_at),
        dns_suffixes=None if row.dns_suffixes is None else tuple(row.dns_suffixes),
        subject_patterns=None if row.subject_patterns is None else tuple(row.subject_patterns),
        max_days=row.max_days,
    )


def _pending_to_domain(row: Row[Any]) -> PendingEnrollment:
    return PendingEnrollment(
        id=PendingId(row.id),
        label=row.label,
        operation=EstOperation(row.operation),
        requester=row.requester,
        key_fingerprint=row.key_fingerprint,
        subject=row.subject,
        csr_der=row.csr_der,
        status=PendingStatus(row.status),
        created_at=convert.aware(row.created_at),
        decided_at=convert.aware(row.decided_at) if row.decided_at else None,
        decided_by=row.decided_by,
        ca_id=types.CAId(row.ca_id) if row.ca_id else None,
        serial=types.Serial(int(row.serial, 16)) if row.serial else None,
    )


def _budget_to_domain(row: Row[Any]) -> LoginBudget:
    return LoginBudget(key=row.key, rate=row.rate, burst=row.burst, tokens=row.tokens, at=row.at)


class SqlEstRepository:
    """EST repository over one ``Database``; safe for concurrent use."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_label(self, label: EstLabel, *, audit: types.AuditEvent) -> None:
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(_LABEL).values(**_label_from_domain(label, audit.at)))
                await audit_chain.append(conn, [audit])
        except IntegrityError as exc:
            raise EngineError(
                ProblemKind.CONFLICT, f"an EST label named {label.name!r} already exists"
            ) from exc

    async def get_label(self, name: str) -> EstLabel | None:
        row = await self._db.fetch_first(select(_LABEL).where(_LABEL.c.name == name))
        return _label_to_domain(row) if row else None

    async def list_labels(self) -> Sequence[EstLabel]:
        rows = await self._db.fetch_all(select(_LABEL).order_by(_LABEL.c.name))
        return [_label_to_domain(r) for r in rows]

    async def remove_label(self, name: str, *, audit: types.AuditEvent) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(delete(_LABEL).where(_LABEL.c.name == name))
            if result.rowcount != 1:
                return False
            await conn.execute(delete(_USER).where(_USER.c.label == name))
            await audit_chain.append(conn, [audit])
        return True

    # ------------------------------------------------------------------ users

    async def put_user(self, user: EstUser, *, audit: types.AuditEvent) -> None:
        narrowing = {
            "dns_suffixes": None if user.dns_suffixes is None else list(user.dns_suffixes),
            "subject_patterns": (
                None if user.subject_patterns is None else list(user.subject_patterns)
            ),
            "max_days": user.max_days,
        }
        async with self._db.write() as conn:
            result = await conn.execute(
                update(_USER)
                .where(_USER.c.label == user.label, _USER.c.username == user.username)
                .values(password_hash=user.password_hash, **narrowing)
            )
            if result.rowcount == 0:
                await conn.execute(
                    insert(_USER).values(
                        label=user.label,
                        username=user.username,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        **narrowing,
                    )
                )
            await audit_chain.append(conn, [audit])

    async def get_user(self, label: str, username: str) -> EstUser | None:
        stmt = select(_USER).where(_USER.c.label == label, _USER.c.username == username)
        row = await self._db.fetch_first(stmt)
        return _user_to_domain(row) if row else None

    async def list_users(self, label: str | None) -> Sequence[EstUser]:
        stmt = select(_USER).order_by(_USER.c.label, _USER.c.username)
        if label is not None:
            stmt = stmt.where(_USER.c.label == label)
        rows = await self._db.fetch_all(stmt)
        return [_user_to_domain(r) for r in rows]

    async def remove_user(self, label: str, username: str, *, audit: types.AuditEvent) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                delete(_USER).where(_USER.c.label == label, _USER.c.username == username)
            )
            if result.rowcount != 1:
                return False
            await audit_chain.append(conn, [audit])
        return True

    # ------------------------------------------------------------------ pending approvals

    async def add_pending(
        self, pending: PendingEnrollment, *, audit: types.AuditEvent | None = None
    ) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                insert(_PENDING).values(
                    id=pending.id,
                    label=pending.label,
                    operation=str(pending.operation),
                    requester=pending.requester,
                    key_fingerprint=pending.key_fingerprint,
                    subject=pending.subject,
                    csr_der=pending.csr_der,
                    status=str(pending.status),
                    created_at=pending.created_at,
                    decided_at=pending.decided_at,
                    decided_by=pending.decided_by,
                    ca_id=pending.ca_id,
                    serial=format(pending.serial, "X") if pending.serial is not None else None,
                )
            )
            if audit is not None:
                await audit_chain.append(conn, [audit])

    async def find_pending(
        self, label: str, requester: str, key_fingerprint: str
    ) -> PendingEnrollment | None:
        stmt = (
            select(_PENDING)
            .where(
                _PENDING.c.label == label,
                _PENDING.c.requester == requester,
                _PENDING.c.key_fingerprint == key_fingerprint,
            )
            .order_by(_PENDING.c.created_at.desc(), _PENDING.c.id.desc())
            .limit(1)
        )
        row = await self._db.fetch_first(stmt)
        return _pending_to_domain(row) if row else None

    async def get_pending(self, pending_id: PendingId) -> PendingEnrollment | None:
        row = await self._db.fetch_first(select(_PENDING).where(_PENDING.c.id == pending_id))
        return _pending_to_domain(row) if row else None

    async def list_pending(self, status: PendingStatus | None) -> Sequence[PendingEnrollment]:
        stmt = select(_PENDING).order_by(_PENDING.c.created_at, _PENDING.c.id)
        if status is not None:
            stmt = stmt.where(_PENDING.c.status == str(status))
        rows = await self._db.fetch_all(stmt)
        return [_pending_to_domain(r) for r in rows]

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
        values: dict[str, Any] = {"status": str(to_status)}
        if by is not None:
            values |= {"decided_at": at, "decided_by": by}
        if ca_id is not None:
            values["ca_id"] = ca_id
        if serial is not None:
            values["serial"] = format(serial, "X")
        async with self._db.write() as conn:
            result = await conn.execute(
                update(_PENDING)
                .where(_PENDING.c.id == pending_id, _PENDING.c.status == str(from_status))
                .values(**values)
            )
            if result.rowcount != 1:
                return False
            if audit is not None:
                await audit_chain.append(conn, [audit])
        return True

    # ------------------------------------------------------------------ failed-login budgets

    async def take_login_tokens(
        self, budgets: Sequence[LoginBudget], *, now: float
    ) -> Sequence[LoginBudget]:
        if not budgets:
            return []
        # One upsert takes every token whose bucket holds one: the row lock (PostgreSQL)
        # or the database write lock (SQLite) makes the check and the take one step, so
        # parallel attempts on any node never see the same token. Keys in a fixed order
        # keep two such statements from deadlocking on PostgreSQL.
        ordered = sorted(budgets, key=lambda b: b.key)
        insert_fn = sqlite_insert if self._db.is_sqlite else pg_insert
        stmt = insert_fn(_BUDGET).values(
            [
                {"key": b.key, "tokens": b.burst - 1, "at": now, "rate": b.rate, "burst": b.burst}
                for b in ordered
            ]
        )
        new = stmt.excluded
        later = new.at > _BUDGET.c.at
        refilled = _BUDGET.c.tokens + case((later, new.at - _BUDGET.c.at), else_=0.0) * new.rate
        level = case((refilled > new.burst, new.burst), else_=refilled)
        upsert = stmt.on_conflict_do_update(
            index_elements=[_BUDGET.c.key],
            set_={
                "tokens": level - 1,
                "at": case((later, new.at), else_=_BUDGET.c.at),
                "rate": new.rate,
                "burst": new.burst,
            },
            where=level >= 1,
        ).returning(_BUDGET.c.key)
        async with self._db.write() as conn:
            taken = {r[0] for r in (await conn.execute(upsert)).all()}
            if len(taken) == len(ordered):
                return []
            # All or none: give back what this statement took, in the same transaction.
            await conn.execute(_give_back(taken))
            rows = (
                await conn.execute(
                    select(_BUDGET).where(_BUDGET.c.key.in_([b.key for b in ordered]))
                )
            ).all()
        return [_budget_to_domain(r) for r in rows if r.key not in taken]

    async def return_login_tokens(self, keys: Sequence[str]) -> None:
        if keys:
            async with self._db.write() as conn:
                await conn.execute(_give_back(keys))

    async def get_login_budgets(self, keys: Sequence[str]) -> Sequence[LoginBudget]:
        if not keys:
            return []
        rows = await self._db.fetch_all(select(_BUDGET).where(_BUDGET.c.key.in_(list(keys))))
        return [_budget_to_domain(r) for r in rows]

    async def prune_login_budgets(self, *, now: float) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(
                delete(_BUDGET).where(_BUDGET.c.at + _BUDGET.c.burst / _BUDGET.c.rate < now)
            )
        return int(result.rowcount or 0)


def _give_back(keys: Collection[str]) -> Update:
    """Return one token to each bucket in ``keys``, at most up to its burst."""
    plus_one = _BUDGET.c.tokens + 1
    return (
        update(_BUDGET)
        .where(_BUDGET.c.key.in_(sorted(keys)))
        .values(tokens=case((plus_one > _BUDGET.c.burst, _BUDGET.c.burst), else_=plus_one))
    )
