"""SQL implementation of the admin engine's ``AdminRepository`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.ca import types
from server.ca.admin.api import AdminCertificate, AdminToken, Role
from server.ca.errors import EngineError, ProblemKind
from server.store import audit_chain, convert
from server.store.admin_models import AdminCertificateRow, AdminTokenRow
from server.store.database import Database
from server.store.models import AuditRow

__all__ = ["SqlAdminRepository"]

_TOKEN = cast(Table, AdminTokenRow.__table__)
_CERT = cast(Table, AdminCertificateRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)


def _optional(value: datetime | None) -> datetime | None:
    return convert.aware(value) if value is not None else None


def _token_to_domain(row: Row[Any]) -> AdminToken:
    return AdminToken(
        name=row.name,
        role=Role(row.role),
        scope=row.scope,
        token_hash=row.token_hash,
        created_at=convert.aware(row.created_at),
        expires_at=convert.aware(row.expires_at),
        created_by=row.created_by,
        revoked_at=_optional(row.revoked_at),
        last_used_at=_optional(row.last_used_at),
    )


def _cert_to_domain(row: Row[Any]) -> AdminCertificate:
    return AdminCertificate(
        serial=int(row.serial, 16),
        name=row.name,
        role=Role(row.role),
        scope=row.scope,
        subject=row.subject,
        not_after=convert.aware(row.not_after),
        created_at=convert.aware(row.created_at),
        created_by=row.created_by,
        revoked_at=_optional(row.revoked_at),
    )


class SqlAdminRepository:
    """Admin identities over one ``Database``; safe for concurrent use."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_token(self, token: AdminToken, *, audit: types.AuditEvent) -> None:
        values = {
            "name": token.name,
            "role": str(token.role),
            "scope": token.scope,
            "token_hash": token.token_hash,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "created_by": token.created_by,
            "revoked_at": token.revoked_at,
            "last_used_at": token.last_used_at,
        }
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(_TOKEN).values(**values))
                await audit_chain.append(conn, [audit])
        except IntegrityError as exc:
            raise EngineError(
                ProblemKind.CONFLICT, f"an admin token named {token.name!r} already exists"
            ) from exc

    async def token_by_hash(self, token_hash: str) -> AdminToken | None:
        row = await self._db.fetch_first(select(_TOKEN).where(_TOKEN.c.token_hash == token_hash))
        return _token_to_domain(row) if row else None

    async def list_tokens(self) -> Sequence[AdminToken]:
        rows = await self._db.fetch_all(select(_TOKEN).order_by(_TOKEN.c.name))
        return [_token_to_domain(r) for r in rows]

    async def revoke_token(self, name: str, *, at: datetime, audit: types.AuditEvent) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                update(_TOKEN)
                .where(_TOKEN.c.name == name, _TOKEN.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            if result.rowcount != 1:
                return False
            await audit_chain.append(conn, [audit])
        return True

    async def touch_token(self, name: str, *, at: datetime) -> None:
        async with self._db.write() as conn:
            await conn.execute(update(_TOKEN).where(_TOKEN.c.name == name).values(last_used_at=at))

    async def add_certificate(self, cert: AdminCertificate, *, audit: types.AuditEvent) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                insert(_CERT).values(
                    serial=convert.serial_key(cert.serial),
                    name=cert.name,
                    role=str(cert.role),
                    scope=cert.scope,
                    subject=cert.subject,
                    not_after=cert.not_after,
                    created_at=cert.created_at,
                    created_by=cert.created_by,
                    revoked_at=cert.revoked_at,
                )
            )
            await audit_chain.append(conn, [audit])

    async def certificate_by_serial(self, serial: int) -> AdminCertificate | None:
        row = await self._db.fetch_first(
            select(_CERT).where(_CERT.c.serial == convert.serial_key(serial))
        )
        return _cert_to_domain(row) if row else None

    async def list_certificates(self) -> Sequence[AdminCertificate]:
        rows = await self._db.fetch_all(
            select(_CERT).order_by(_CERT.c.name, _CERT.c.created_at, _CERT.c.serial)
        )
        return [_cert_to_domain(r) for r in rows]

    async def revoke_certificates(
        self, name: str, *, at: datetime, audit: types.AuditEvent
    ) -> Sequence[AdminCertificate]:
        async with self._db.write() as conn:
            live = (
                await conn.execute(
                    select(_CERT).where(_CERT.c.name == name, _CERT.c.revoked_at.is_(None))
                )
            ).all()
            if not live:
                return []
            await conn.execute(
                update(_CERT)
                .where(_CERT.c.name == name, _CERT.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            await audit_chain.append(conn, [audit])
        return [_cert_to_domain(r) for r in live]
