"""SQL implementation of the engine's ``Repository`` port (SQLite and PostgreSQL).

Uses Core statements on the hot paths (one short transaction per write) and
converts rows to engine types with ``_to_domain`` helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
from sqlalchemy import ColumnElement, Row, Select, Table, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.ca import audit as trail
from server.ca import types
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import SerialConflictError
from server.store import audit_chain, convert
from server.store.database import Batcher, Database, GroupCommit
from server.store.models import AuditRow, CARow, CertificateRow, CrlNumberRow, CrlRow, MetaRow

__all__ = ["SqlRepository", "select_certificate", "select_latest_crl"]

_CA = cast(Table, CARow.__table__)
_CERT = cast(Table, CertificateRow.__table__)
_CRL = cast(Table, CrlRow.__table__)
_CRLNUM = cast(Table, CrlNumberRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
_META = cast(Table, MetaRow.__table__)


def _ca_to_domain(row: Row[Any]) -> types.CA:
    return types.CA(
        id=types.CAId(row.id),
        name=row.name,
        parent_id=types.CAId(row.parent_id) if row.parent_id else None,
        tier=row.tier,
        key_algorithm=types.KeyAlgorithm(row.key_algorithm),
        key=types.KeyHandle(backend=row.key_backend, ref=row.key_ref, blob=row.key_blob),
        status=types.CAStatus(row.status),
        mode=types.CAMode(row.mode),
        kind=types.CAKind(row.kind),
        created_at=convert.aware(row.created_at),
        cert_der=row.cert_der,
        csr_der=row.csr_der,
        chain_der=tuple(bytes.fromhex(h) for h in row.chain_der),
        external=row.external,
        allowed_dns_suffixes=tuple(row.allowed_dns_suffixes),
        allowed_ip_networks=tuple(row.allowed_ip_networks),
        publish_revocation=row.publish_revocation,
        offline=row.offline,
        version=row.version,
    )


def _ca_from_domain(ca: types.CA) -> dict[str, Any]:
    return {
        "id": ca.id,
        "name": ca.name,
        "parent_id": ca.parent_id,
        "tier": ca.tier,
        "key_algorithm": str(ca.key_algorithm),
        "key_backend": ca.key.backend,
        "key_ref": ca.key.ref,
        "key_blob": ca.key.blob,
        "status": str(ca.status),
        "mode": str(ca.mode),
        "kind": str(ca.kind),
        "created_at": ca.created_at,
        "cert_der": ca.cert_der,
        "csr_der": ca.csr_der,
        "chain_der": [d.hex() for d in ca.chain_der],
        "external": ca.external,
        "allowed_dns_suffixes": list(ca.allowed_dns_suffixes),
        "allowed_ip_networks": list(ca.allowed_ip_networks),
        "publish_revocation": ca.publish_revocation,
        "offline": ca.offline,
        "version": ca.version,
        "extra": {},
    }


def _cert_to_domain(row: Row[Any]) -> types.CertificateRecord:
    return types.CertificateRecord(
        ca_id=types.CAId(row.ca_id),
        serial=types.Serial(int(row.serial, 16)),
        der=row.der,
        profile=row.profile,
        subject=row.subject,
        sans=tuple(s for s in row.sans.split("\n") if s),
        not_before=convert.aware(row.not_before),
        not_after=convert.aware(row.not_after),
        issued_at=convert.aware(row.issued_at),
        requester=row.requester,
        status=types.CertStatus(row.status),
        revoked_at=convert.aware_or_none(row.revoked_at),
        revocation_reason=(
            types.RevocationReason(row.revocation_reason) if row.revocation_reason else None
        ),
        is_ca=row.is_ca,
    )


def _cert_from_domain(rec: types.CertificateRecord) -> dict[str, Any]:
    return {
        "ca_id": rec.ca_id,
        "serial": convert.serial_key(rec.serial),
        "der": rec.der,
        "profile": rec.profile,
        "subject": rec.subject,
        "sans": "\n".join(rec.sans),
        "not_before": rec.not_before,
        "not_after": rec.not_after,
        "issued_at": rec.issued_at,
        "requester": rec.requester,
        "status": str(rec.status),
        "revoked_at": rec.revoked_at,
        "revocation_reason": str(rec.revocation_reason) if rec.revocation_reason else None,
        "is_ca": rec.is_ca,
    }


def select_certificate(ca_id: types.CAId, key: str) -> Select[Any]:
    """Return the statement reading one certificate row by (CA, stored serial)."""
    return select(_CERT).where(_CERT.c.ca_id == ca_id, _CERT.c.serial == key)


def select_latest_crl(ca_id: types.CAId, *columns: ColumnElement[Any]) -> Select[Any]:
    """Return the statement reading ``ca_id``'s newest CRL row (``columns``: all by default)."""
    stmt = select(*columns) if columns else select(_CRL)
    return stmt.where(_CRL.c.ca_id == ca_id).order_by(_CRL.c.number.desc()).limit(1)


_GET_CERT_SQL = "SELECT * FROM certificates WHERE ca_id = $1 AND serial = $2"
_CERT_STATUSES_SQL = (
    "SELECT c.ca_id, c.serial, c.status FROM unnest($1::text[], $2::text[]) AS k(ca_id, serial) "
    "JOIN certificates c ON c.ca_id = k.ca_id AND c.serial = k.serial"
)
_StatusKey = tuple[str, str]  # (ca_id, stored serial)
_CertRows = tuple[dict[str, Any], types.AuditEvent]
_CERT_COLUMNS: tuple[str, ...] = (
    "ca_id", "serial", "der", "profile", "subject", "sans", "not_before", "not_after",
    "issued_at", "requester", "status", "revoked_at", "revocation_reason", "is_ca",
)  # fmt: skip


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """Return a positional asyncpg INSERT of ``columns`` into ``table``."""
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"  # noqa: S608 - fixed names


_INSERT_CERT_SQL = _insert_sql("certificates", _CERT_COLUMNS)


class SqlRepository:
    """Repository over one ``Database``; safe for concurrent use."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cert_batcher: GroupCommit[_CertRows] = GroupCommit(self._insert_certificates)
        self._status_reads: Batcher[_StatusKey, str | None] = Batcher(self._read_statuses)

    async def add_ca(
        self,
        ca: types.CA,
        *,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
    ) -> None:
        async with self._db.write() as conn:
            try:
                await conn.execute(insert(_CA).values(**_ca_from_domain(ca)))
            except IntegrityError as exc:
                raise EngineError(
                    ProblemKind.CONFLICT, f"a CA named {ca.name!r} already exists"
                ) from exc
            if certificate is not None:
                await _insert_certificate(conn, certificate.record)
            await audit_chain.append(conn, _chained(audit, certificate=certificate))

    async def update_ca(
        self,
        ca: types.CA,
        *,
        expected_version: int,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
        revocation: types.CertificateRevocation | None = None,
    ) -> bool:
        values = _ca_from_domain(ca)
        values.pop("id")
        values["version"] = expected_version + 1
        try:
            async with self._db.write() as conn:
                # One statement checks and writes, so two nodes cannot both pass the check.
                done = await conn.execute(
                    update(_CA)
                    .where(_CA.c.id == ca.id, _CA.c.version == expected_version)
                    .values(**values)
                )
                if done.rowcount != 1:
                    return False
                if revocation is not None and not await _revoke(conn, revocation):
                    raise _LostError  # rolls the CA write back with it
                if certificate is not None:
                    await _insert_certificate(conn, certificate.record)
                await audit_chain.append(
                    conn, _chained(audit, certificate=certificate, revocation=revocation)
                )
                return True
        except _LostError:
            return False

    async def replace_ca_key(
        self,
        ca_id: types.CAId,
        *,
        old: types.KeyHandle,
        new: types.KeyHandle,
        audit: types.AuditEvent,
    ) -> bool:
        async with self._db.write() as conn:
            swapped = await conn.execute(
                update(_CA)
                .where(
                    _CA.c.id == ca_id,
                    _CA.c.key_backend == old.backend,
                    _CA.c.key_ref == old.ref,
                    _CA.c.key_blob == old.blob,
                )
                .values(
                    key_backend=new.backend,
                    key_ref=new.ref,
                    key_blob=new.blob,
                    version=_CA.c.version + 1,
                )
            )
            if swapped.rowcount != 1:
                return False
            await audit_chain.append(conn, [audit])
            return True

    async def get_ca(self, ca_id: types.CAId) -> types.CA | None:
        row = await self._db.fetch_first(select(_CA).where(_CA.c.id == ca_id))
        return _ca_to_domain(row) if row else None

    async def get_ca_by_name(self, name: str) -> types.CA | None:
        row = await self._db.fetch_first(select(_CA).where(_CA.c.name == name))
        return _ca_to_domain(row) if row else None

    async def list_cas(self) -> Sequence[types.CA]:
        rows = await self._db.fetch_all(select(_CA).order_by(_CA.c.created_at, _CA.c.tier))
        return [_ca_to_domain(r) for r in rows]

    async def add_certificate(
        self, record: types.CertificateRecord, *, audit: types.AuditEvent
    ) -> None:
        """Insert through the group-commit batcher; returns once the row is committed."""
        await self._cert_batcher.submit((_cert_from_domain(record), audit))

    async def _insert_certificates(self, batch: list[_CertRows]) -> list[BaseException | None]:
        """Write a batch in one transaction; on a conflict fall back to one row at a time."""
        try:
            if self._db.is_sqlite:
                async with self._db.write() as conn:
                    await conn.execute(insert(_CERT), [cert for cert, _ in batch])
                    # The whole batch joins the chain under one head lock.
                    await audit_chain.append(conn, [audit for _, audit in batch])
            else:
                # Hot path of every issuance: asyncpg's own executemany (one prepared
                # statement, pipelined) costs a fraction of Core's executemany.
                certs = [tuple(cert[c] for c in _CERT_COLUMNS) for cert, _ in batch]
                async with self._db.pg() as pg, pg.transaction():
                    await pg.executemany(_INSERT_CERT_SQL, certs)
                    # Last, so the chain head (every node's writers queue on it) is
                    # held only for the audit insert and the commit.
                    await audit_chain.append_pg(pg, [audit for _, audit in batch])
            return [None] * len(batch)
        except (IntegrityError, asyncpg.UniqueViolationError):
            if len(batch) == 1:
                return [SerialConflictError(str(batch[0][0]["serial"]))]
        results: list[BaseException | None] = []
        for item in batch:
            results.extend(await self._insert_certificates([item]))
        return results

    async def get_certificate(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertificateRecord | None:
        key = convert.serial_key(serial)
        row: Any
        if self._db.is_sqlite:
            row = await self._db.fetch_first(select_certificate(ca_id, key))
        else:
            # Hot path (EST client certificates, ACME revocation, OCSP misses).
            async with self._db.pg() as pg:
                record = await pg.fetchrow(_GET_CERT_SQL, ca_id, key)
            row = SimpleNamespace(**record) if record is not None else None
        return _cert_to_domain(row) if row else None

    async def certificate_status(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertStatus | None:
        """Read one stored status; concurrent reads share one statement."""
        status = await self._status_reads.submit((ca_id, convert.serial_key(serial)))
        return types.CertStatus(status) if status is not None else None

    async def _read_statuses(self, keys: list[_StatusKey]) -> list[str | None]:
        """Read the stored status of every (ca_id, serial) in one statement."""
        found: dict[_StatusKey, str]
        if self._db.is_sqlite:
            stmt = select(_CERT.c.ca_id, _CERT.c.serial, _CERT.c.status).where(
                tuple_(_CERT.c.ca_id, _CERT.c.serial).in_(sorted(set(keys)))
            )
            found = {(r.ca_id, r.serial): r.status for r in await self._db.fetch_all(stmt)}
        else:
            cas, serials = [k[0] for k in keys], [k[1] for k in keys]
            async with self._db.pg() as pg:
                rows = await pg.fetch(_CERT_STATUSES_SQL, cas, serials)
            found = {(r[0], r[1]): r[2] for r in rows}
        return [found.get(key) for key in keys]

    async def list_certificates(self, query: types.CertQuery) -> Sequence[types.CertificateRecord]:
        stmt = _filtered(select(_CERT), query).order_by(_CERT.c.id.desc()).limit(query.limit)
        rows = await self._db.fetch_all(stmt)
        return [_cert_to_domain(r) for r in rows]

    async def page_certificates(
        self, query: types.CertQuery, *, cursor: str | None = None
    ) -> types.CertificatePage:
        # Keyset pagination on the row id: stable while certificates are added.
        stmt = _filtered(select(_CERT), query)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 19:
                raise EngineError(ProblemKind.MALFORMED, "unknown cursor")
            stmt = stmt.where(_CERT.c.id < int(cursor))
        rows = await self._db.fetch_all(stmt.order_by(_CERT.c.id.desc()).limit(query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return types.CertificatePage(
            tuple(_cert_to_domain(r) for r in rows), str(rows[-1].id) if more else None
        )

    async def revoke_certificate(
        self,
        ca_id: types.CAId,
        serial: types.Serial,
        *,
        at: datetime,
        reason: types.RevocationReason,
        audit: types.AuditEvent,
    ) -> types.CertificateRecord | None:
        key = convert.serial_key(serial)
        async with self._db.write() as conn:
            if not await _revoke_valid(conn, ca_id, key, at=at, reason=reason):
                return None
            await audit_chain.append(conn, [audit])
            row = (await conn.execute(select_certificate(ca_id, key))).one()
        return _cert_to_domain(row)

    async def add_crl(self, crl: types.CrlRecord, *, audit: types.AuditEvent) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                insert(_CRL).values(
                    ca_id=crl.ca_id,
                    number=crl.number,
                    this_update=crl.this_update,
                    next_update=crl.next_update,
                    der=crl.der,
                )
            )
            await audit_chain.append(conn, [audit])

    async def latest_crl(self, ca_id: types.CAId) -> types.CrlRecord | None:
        row = await self._db.fetch_first(select_latest_crl(ca_id))
        if row is None:
            return None
        return types.CrlRecord(
            ca_id=types.CAId(row.ca_id),
            number=row.number,
            this_update=convert.aware(row.this_update),
            next_update=convert.aware(row.next_update),
            der=row.der,
        )

    async def next_crl_number(self, ca_id: types.CAId) -> int:
        async with self._db.write() as conn:
            # UPDATE ... RETURNING is atomic on both backends; insert the first row on miss.
            result = await conn.execute(
                update(_CRLNUM)
                .where(_CRLNUM.c.ca_id == ca_id)
                .values(last=_CRLNUM.c.last + 1)
                .returning(_CRLNUM.c.last)
            )
            value = result.scalar_one_or_none()
            if value is not None:
                return int(value)
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(_CRLNUM).values(ca_id=ca_id, last=1))
                return 1
        except IntegrityError:
            return await self.next_crl_number(ca_id)

    async def add_audit(self, event: types.AuditEvent) -> None:
        async with self._db.write() as conn:
            await audit_chain.append(conn, [event])

    async def list_audit(self, *, limit: int = 100) -> Sequence[types.AuditEvent]:
        stmt = select(_AUDIT).order_by(_AUDIT.c.seq.desc()).limit(limit)
        return [audit_chain.to_domain(r) for r in await self._db.fetch_all(stmt)]

    async def audit_page(self, *, after_seq: int, limit: int) -> Sequence[types.AuditEvent]:
        rows = await self._db.fetch_all(audit_chain.read_page_stmt(after_seq, limit))
        return [audit_chain.to_domain(r) for r in rows]

    async def audit_head(self) -> trail.ChainHead:
        return audit_chain.head_of(await self._db.fetch_first(audit_chain.head_stmt()))

    async def page_audit(
        self, query: types.AuditQuery, *, cursor: str | None = None
    ) -> types.AuditPage:
        # Keyset pagination on the row id, as page_certificates; at is indexed.
        stmt = select(_AUDIT)
        for column, value in (
            (_AUDIT.c.actor, query.actor),
            (_AUDIT.c.action, query.action),
            (_AUDIT.c.target, query.target),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if query.since is not None:
            stmt = stmt.where(_AUDIT.c.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(_AUDIT.c.at < query.until)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 19:
                raise EngineError(ProblemKind.MALFORMED, "unknown cursor")
            after = int(cursor)
            stmt = stmt.where(_AUDIT.c.id > after if query.oldest_first else _AUDIT.c.id < after)
        order = _AUDIT.c.id.asc() if query.oldest_first else _AUDIT.c.id.desc()
        rows = await self._db.fetch_all(stmt.order_by(order).limit(query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        events = tuple(audit_chain.to_domain(r) for r in rows)
        return types.AuditPage(events, str(rows[-1].id) if more else None)

    async def get_meta(self, key: str) -> str | None:
        """Return an installation-wide value (not part of the engine port)."""
        row = await self._db.fetch_first(select(_META.c.value).where(_META.c.key == key))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        """Store an installation-wide value."""
        async with self._db.write() as conn:
            result = await conn.execute(update(_META).where(_META.c.key == key).values(value=value))
            if result.rowcount == 0:
                await conn.execute(insert(_META).values(key=key, value=value))


class _LostError(Exception):
    """Raised inside a write transaction to roll it back: a condition it checked failed."""


def _chained(
    audit: types.AuditEvent,
    *,
    certificate: types.CertificateInsert | None = None,
    revocation: types.CertificateRevocation | None = None,
) -> list[types.AuditEvent]:
    """Return a CA write's audit records in the port's order: revocation, CA, certificate."""
    return [
        *([revocation.audit] if revocation is not None else []),
        audit,
        *([certificate.audit] if certificate is not None else []),
    ]


async def _insert_certificate(conn: AsyncConnection, record: types.CertificateRecord) -> None:
    """Insert one certificate row in ``conn``'s transaction.

    Raises:
        SerialConflictError: (issuer, serial) is taken; the caller's transaction must end.
    """
    try:
        await conn.execute(insert(_CERT).values(**_cert_from_domain(record)))
    except IntegrityError as exc:
        raise SerialConflictError(record.serial_hex) from exc


async def _revoke(conn: AsyncConnection, revocation: types.CertificateRevocation) -> bool:
    """Revoke ``revocation.record`` in ``conn``'s transaction; False if it is not VALID."""
    record = revocation.record
    return await _revoke_valid(
        conn,
        record.ca_id,
        convert.serial_key(record.serial),
        at=revocation.at,
        reason=revocation.reason,
    )


async def _revoke_valid(
    conn: AsyncConnection,
    ca_id: types.CAId,
    key: str,
    *,
    at: datetime,
    reason: types.RevocationReason,
) -> bool:
    """Mark one certificate revoked if it is VALID; False (nothing changed) if it is not."""
    result = await conn.execute(
        update(_CERT)
        .where(
            _CERT.c.ca_id == ca_id,
            _CERT.c.serial == key,
            _CERT.c.status == str(types.CertStatus.VALID),
        )
        .values(
            status=str(types.CertStatus.REVOKED),
            revoked_at=at,
            revocation_reason=str(reason),
        )
    )
    return bool(result.rowcount == 1)


def _filtered(stmt: Select[Any], query: types.CertQuery) -> Select[Any]:
    """Return ``stmt`` narrowed by every filter of ``query``."""
    if query.ca_id is not None:
        stmt = stmt.where(_CERT.c.ca_id == query.ca_id)
    if query.ca_ids is not None:
        stmt = stmt.where(_CERT.c.ca_id.in_(sorted(query.ca_ids)))
    if query.status is not None:
        stmt = stmt.where(_CERT.c.status == str(query.status))
    if query.serial is not None:
        stmt = stmt.where(_CERT.c.serial == convert.serial_key(query.serial))
    if query.expires_before is not None:
        stmt = stmt.where(_CERT.c.not_after < query.expires_before)
    if query.expires_after is not None:
        stmt = stmt.where(_CERT.c.not_after > query.expires_after)
    if query.text:
        # A substring, not a pattern: LIKE's wildcards in the text match themselves.
        text = query.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{text}%"
        stmt = stmt.where(
            or_(
                func.lower(_CERT.c.subject).like(pattern, escape="\\"),
                func.lower(_CERT.c.sans).like(pattern, escape="\\"),
            )
        )
    return stmt
