"""SQL implementation of ``server.ca.status.ports.StatusRepository`` (SQLite and PostgreSQL).

Core statements, one short transaction per write (SQLite writes go through the
write lock). The leader lock is ``pg_try_advisory_lock`` on PostgreSQL, held on
a dedicated connection for the duration of the work; on SQLite (one process)
an in-process lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from server.ca import types
from server.ca.status import ports as status_ports
from server.store import audit_chain, convert, repository
from server.store.database import Database, GroupCommit
from server.store.models import CertificateRow, CrlRow
from server.store.status_models import CrlDirtyRow, OcspResponseRow, OcspSignerRow

__all__ = ["SqlStatusRepository"]

_RESP = cast(Table, OcspResponseRow.__table__)
_SIGNER = cast(Table, OcspSignerRow.__table__)
_DIRTY = cast(Table, CrlDirtyRow.__table__)
_CERT = cast(Table, CertificateRow.__table__)
_CRL = cast(Table, CrlRow.__table__)


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"privca:{name}".encode()).digest()[:8], "big", signed=True
    )


_RESPONSE_UPDATES = ("der", "cert_status", "this_update", "next_update", "updated_at")
_RESPONSE_COLUMNS = ("ca_id", "serial", *_RESPONSE_UPDATES)
# One statement for the whole batch (executemany in asyncpg runs in one implicit
# transaction): a fraction of the CPU of Core's executemany on the issuance path.
_PUT_RESPONSE_SQL = (
    "INSERT INTO ocsp_responses (ca_id, serial, der, cert_status, this_update, next_update, "
    "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (ca_id, serial) DO UPDATE SET "
    "der = EXCLUDED.der, cert_status = EXCLUDED.cert_status, this_update = EXCLUDED.this_update, "
    "next_update = EXCLUDED.next_update, updated_at = EXCLUDED.updated_at"
)
_REASONS = {str(r): r for r in types.RevocationReason}


def _to_signer(row: Any) -> status_ports.SignerRecord:
    return status_ports.SignerRecord(
        ca_id=types.CAId(row.ca_id),
        serial=types.Serial(int(row.serial, 16)),
        cert_der=row.cert_der,
        key=types.KeyHandle(backend=row.key_backend, ref=row.key_ref, blob=row.key_blob),
        not_before=convert.aware(row.not_before),
        not_after=convert.aware(row.not_after),
        created_at=convert.aware(row.created_at),
    )


class SqlStatusRepository:
    """Status repository over one ``Database``; safe for concurrent use."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sqlite = db.is_sqlite
        self._responses: GroupCommit[dict[str, Any]] = GroupCommit(self._put_responses)
        self._leaders: dict[str, asyncio.Lock] = {}

    def _upsert(self, table: Table, values: dict[str, Any], keys: list[str]) -> Any:
        dialect = sqlite if self._sqlite else postgresql
        stmt = dialect.insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )

    async def put_response(self, response: status_ports.StoredResponse) -> None:
        """Store a signed response; concurrent callers share one transaction."""
        await self._responses.submit(
            {
                "ca_id": response.ca_id,
                "serial": convert.serial_key(response.serial),
                "der": response.der,
                "cert_status": response.cert_status,
                "this_update": response.this_update,
                "next_update": response.next_update,
                "updated_at": response.updated_at,
            }
        )

    async def _put_responses(self, batch: list[dict[str, Any]]) -> list[BaseException | None]:
        # One upsert per (ca_id, serial) per statement: the last submitted wins.
        latest = {(v["ca_id"], v["serial"]): v for v in batch}
        if not self._sqlite:
            rows = [tuple(v[c] for c in _RESPONSE_COLUMNS) for v in latest.values()]
            async with self._db.pg() as pg:
                await pg.executemany(_PUT_RESPONSE_SQL, rows)
            return [None] * len(batch)
        stmt = sqlite.insert(_RESP)
        stmt = stmt.on_conflict_do_update(
            index_elements=["ca_id", "serial"],
            set_={c: stmt.excluded[c] for c in _RESPONSE_UPDATES},
        )
        async with self._db.write() as conn:
            await conn.execute(stmt, list(latest.values()))
        return [None] * len(batch)

    async def get_response(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> status_ports.StoredResponse | None:
        stmt = select(_RESP).where(
            _RESP.c.ca_id == ca_id, _RESP.c.serial == convert.serial_key(serial)
        )
        row = await self._db.fetch_first(stmt)
        if row is None:
            return None
        return status_ports.StoredResponse(
            ca_id=types.CAId(row.ca_id),
            serial=types.Serial(int(row.serial, 16)),
            der=row.der,
            cert_status=row.cert_status,
            this_update=convert.aware(row.this_update),
            next_update=convert.aware(row.next_update),
            updated_at=convert.aware(row.updated_at),
        )

    async def changed_since(
        self, since: datetime, *, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial, datetime]]:
        stmt = (
            select(_RESP.c.ca_id, _RESP.c.serial, _RESP.c.updated_at)
            .where(_RESP.c.updated_at > since)
            .order_by(_RESP.c.updated_at)
            .limit(limit)
        )
        rows = await self._db.fetch_all(stmt)
        return [
            (types.CAId(r.ca_id), types.Serial(int(r.serial, 16)), convert.aware(r.updated_at))
            for r in rows
        ]

    async def stale_responses(
        self, produced_before: datetime, *, valid_after: datetime, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial]]:
        stmt = (
            select(_RESP.c.ca_id, _RESP.c.serial)
            .join(_CERT, (_CERT.c.ca_id == _RESP.c.ca_id) & (_CERT.c.serial == _RESP.c.serial))
            .where(_RESP.c.this_update < produced_before, _CERT.c.not_after > valid_after)
            .order_by(_RESP.c.this_update)
            .limit(limit)
        )
        rows = await self._db.fetch_all(stmt)
        return [(types.CAId(r.ca_id), types.Serial(int(r.serial, 16))) for r in rows]

    async def count_responses(self) -> int:
        row = await self._db.fetch_first(select(func.count()).select_from(_RESP))
        return int(row[0]) if row else 0

    async def add_signer(self, signer: status_ports.SignerRecord) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                insert(_SIGNER).values(
                    ca_id=signer.ca_id,
                    serial=convert.serial_key(signer.serial),
                    cert_der=signer.cert_der,
                    key_backend=signer.key.backend,
                    key_ref=signer.key.ref,
                    key_blob=signer.key.blob,
                    not_before=signer.not_before,
                    not_after=signer.not_after,
                    created_at=signer.created_at,
                )
            )

    async def current_signer(self, ca_id: types.CAId) -> status_ports.SignerRecord | None:
        stmt = (
            select(_SIGNER)
            .where(_SIGNER.c.ca_id == ca_id)
            .order_by(_SIGNER.c.created_at.desc(), _SIGNER.c.id.desc())
            .limit(1)
        )
        row = await self._db.fetch_first(stmt)
        return None if row is None else _to_signer(row)

    async def list_signers(self, ca_id: types.CAId) -> Sequence[status_ports.SignerRecord]:
        stmt = (
            select(_SIGNER)
            .where(_SIGNER.c.ca_id == ca_id)
            .order_by(_SIGNER.c.created_at, _SIGNER.c.id)
        )
        return [_to_signer(row) for row in await self._db.fetch_all(stmt)]

    async def remove_signer(
        self, ca_id: types.CAId, serial: types.Serial, *, audit: types.AuditEvent
    ) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                delete(_SIGNER).where(
                    _SIGNER.c.ca_id == ca_id, _SIGNER.c.serial == convert.serial_key(serial)
                )
            )
            if not result.rowcount:
                return False
            await audit_chain.append(conn, [audit])
        return True

    async def mark_crl_dirty(self, ca_id: types.CAId, at: datetime) -> None:
        async with self._db.write() as conn:
            await conn.execute(self._upsert(_DIRTY, {"ca_id": ca_id, "marked_at": at}, ["ca_id"]))

    async def dirty_crls(self) -> Sequence[tuple[types.CAId, datetime]]:
        rows = await self._db.fetch_all(select(_DIRTY))
        return [(types.CAId(r.ca_id), convert.aware(r.marked_at)) for r in rows]

    async def clear_crl_dirty(self, ca_id: types.CAId, *, up_to: datetime) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                delete(_DIRTY).where(_DIRTY.c.ca_id == ca_id, _DIRTY.c.marked_at <= up_to)
            )

    async def list_revocations(
        self, ca_id: types.CAId, *, since: datetime | None = None
    ) -> Sequence[status_ports.RevokedEntry]:
        revoked = str(types.CertStatus.REVOKED)
        reasons = _REASONS
        if self._sqlite:
            stmt = select(_CERT.c.serial, _CERT.c.revoked_at, _CERT.c.revocation_reason).where(
                _CERT.c.ca_id == ca_id, _CERT.c.status == revoked
            )
            if since is not None:
                stmt = stmt.where(_CERT.c.revoked_at >= since)
            # Not on the reader thread: a large CRL read would hold up every other read.
            async with self._db.connect() as conn:
                rows: Sequence[Any] = (await conn.execute(stmt)).all()
            return [
                status_ports.RevokedEntry(
                    int(serial, 16),
                    int(convert.aware(at).timestamp()) if at else None,
                    reasons.get(reason) if reason else None,
                )
                for serial, at, reason in rows
            ]
        # A million rows through SQLAlchemy's result machinery cost seconds; asyncpg's
        # own fetch of (text, bigint, text) returns them in a fraction of that.
        sql = (
            "SELECT serial, floor(extract(epoch FROM revoked_at))::bigint, revocation_reason "
            "FROM certificates WHERE ca_id = $1 AND status = $2"
        )
        async with self._db.pg() as pg:
            if since is None:
                rows = await pg.fetch(sql, ca_id, revoked)
            else:
                rows = await pg.fetch(sql + " AND revoked_at >= $3", ca_id, revoked, since)
        entry = status_ports.RevokedEntry
        return [
            entry(int(serial, 16), at, reasons.get(reason) if reason else None)
            for serial, at, reason in rows
        ]

    async def latest_crl_info(self, ca_id: types.CAId) -> tuple[int, datetime] | None:
        stmt = repository.select_latest_crl(ca_id, _CRL.c.number, _CRL.c.this_update)
        row = await self._db.fetch_first(stmt)
        return (int(row.number), convert.aware(row.this_update)) if row else None

    @contextlib.asynccontextmanager
    async def leader(self, name: str) -> AsyncIterator[bool]:
        if self._sqlite:
            lock = self._leaders.setdefault(name, asyncio.Lock())
            if lock.locked():
                yield False
                return
            async with lock:
                yield True
            return
        key = _lock_key(name)
        async with self._db.connect() as conn:
            got = bool(
                (
                    await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                ).scalar_one()
            )
            if not got:
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
