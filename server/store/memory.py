"""In-memory ``Repository`` and ``StatusRepository`` for engine tests: no database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime

from server.ca import types
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import SerialConflictError
from server.ca.status import ports as status_ports

__all__ = ["MemoryRepository", "MemoryStatusRepository"]


class MemoryRepository:
    """Dict-backed repository; one asyncio lock stands in for transactions."""

    def __init__(self) -> None:
        self.cas: dict[types.CAId, types.CA] = {}
        self.certs: dict[tuple[types.CAId, int], types.CertificateRecord] = {}
        self.crls: list[types.CrlRecord] = []
        self.crl_numbers: dict[types.CAId, int] = {}
        self.audit: list[types.AuditEvent] = []
        self._lock = asyncio.Lock()

    def _log(self, event: types.AuditEvent) -> None:
        self.audit.append(replace(event, id=len(self.audit) + 1))

    async def add_ca(self, ca: types.CA, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            if any(c.name == ca.name for c in self.cas.values()):
                raise EngineError(ProblemKind.CONFLICT, f"a CA named {ca.name!r} already exists")
            self.cas[ca.id] = ca
            self._log(audit)

    async def update_ca(self, ca: types.CA, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            self.cas[ca.id] = ca
            self._log(audit)

    async def get_ca(self, ca_id: types.CAId) -> types.CA | None:
        return self.cas.get(ca_id)

    async def get_ca_by_name(self, name: str) -> types.CA | None:
        return next((c for c in self.cas.values() if c.name == name), None)

    async def list_cas(self) -> Sequence[types.CA]:
        return sorted(self.cas.values(), key=lambda c: c.created_at)

    async def add_certificate(
        self, record: types.CertificateRecord, *, audit: types.AuditEvent
    ) -> None:
        async with self._lock:
            key = (record.ca_id, record.serial)
            if key in self.certs:
                raise SerialConflictError(record.serial_hex)
            self.certs[key] = record
            self._log(audit)

    async def get_certificate(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertificateRecord | None:
        return self.certs.get((ca_id, serial))

    async def certificate_status(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertStatus | None:
        rec = self.certs.get((ca_id, serial))
        return rec.status if rec is not None else None

    async def list_certificates(self, query: types.CertQuery) -> Sequence[types.CertificateRecord]:
        out = []
        for rec in sorted(self.certs.values(), key=lambda r: r.issued_at, reverse=True):
            if query.ca_id is not None and rec.ca_id != query.ca_id:
                continue
            if query.status is not None and rec.status is not query.status:
                continue
            if query.serial is not None and rec.serial != query.serial:
                continue
            if query.expires_before is not None and rec.not_after >= query.expires_before:
                continue
            if query.expires_after is not None and rec.not_after <= query.expires_after:
                continue
            if query.text is not None:
                needle = query.text.lower()
                hay = [rec.subject.lower(), *(s.lower() for s in rec.sans)]
                if not any(needle in h for h in hay):
                    continue
            out.append(rec)
            if len(out) >= query.limit:
                break
        return out

    async def revoke_certificate(
        self,
        ca_id: types.CAId,
        serial: types.Serial,
        *,
        at: datetime,
        reason: types.RevocationReason,
        audit: types.AuditEvent,
    ) -> types.CertificateRecord | None:
        async with self._lock:
            rec = self.certs.get((ca_id, serial))
            if rec is None or rec.status is not types.CertStatus.VALID:
                return None
            updated = replace(
                rec, status=types.CertStatus.REVOKED, revoked_at=at, revocation_reason=reason
            )
            self.certs[(ca_id, serial)] = updated
            self._log(audit)
            return updated

    async def add_crl(self, crl: types.CrlRecord) -> None:
        self.crls.append(crl)

    async def latest_crl(self, ca_id: types.CAId) -> types.CrlRecord | None:
        mine = [c for c in self.crls if c.ca_id == ca_id]
        return max(mine, key=lambda c: c.number) if mine else None

    async def next_crl_number(self, ca_id: types.CAId) -> int:
        async with self._lock:
            self.crl_numbers[ca_id] = self.crl_numbers.get(ca_id, 0) + 1
            return self.crl_numbers[ca_id]

    async def add_audit(self, event: types.AuditEvent) -> None:
        async with self._lock:
            self._log(event)

    async def list_audit(self, *, limit: int = 100) -> Sequence[types.AuditEvent]:
        return list(reversed(self.audit))[:limit]


class MemoryStatusRepository:
    """Dict-backed ``StatusRepository`` for engine tests (revocations come from ``source``)."""

    def __init__(self, source: object | None = None) -> None:
        self.responses: dict[tuple[types.CAId, int], status_ports.StoredResponse] = {}
        self.signers: list[status_ports.SignerRecord] = []
        self.dirty: dict[types.CAId, datetime] = {}
        self._source = source
        self._locks: dict[str, asyncio.Lock] = {}

    async def put_response(self, response: status_ports.StoredResponse) -> None:
        self.responses[(response.ca_id, response.serial)] = response

    async def get_response(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> status_ports.StoredResponse | None:
        return self.responses.get((ca_id, serial))

    async def changed_since(
        self, since: datetime, *, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial, datetime]]:
        out = [
            (r.ca_id, r.serial, r.updated_at)
            for r in self.responses.values()
            if r.updated_at > since
        ]
        return sorted(out, key=lambda t: t[2])[:limit]

    async def stale_responses(
        self, produced_before: datetime, *, valid_after: datetime, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial]]:
        del valid_after  # the memory store keeps no certificate validity
        return [
            (r.ca_id, r.serial) for r in self.responses.values() if r.this_update < produced_before
        ][:limit]

    async def count_responses(self) -> int:
        return len(self.responses)

    async def add_signer(self, signer: status_ports.SignerRecord) -> None:
        self.signers.append(signer)

    async def current_signer(self, ca_id: types.CAId) -> status_ports.SignerRecord | None:
        mine = [s for s in self.signers if s.ca_id == ca_id]
        return max(mine, key=lambda s: s.created_at) if mine else None

    async def mark_crl_dirty(self, ca_id: types.CAId, at: datetime) -> None:
        self.dirty[ca_id] = max(at, self.dirty.get(ca_id, at))

    async def dirty_crls(self) -> Sequence[tuple[types.CAId, datetime]]:
        return list(self.dirty.items())

    async def clear_crl_dirty(self, ca_id: types.CAId, *, up_to: datetime) -> None:
        marked = self.dirty.get(ca_id)
        if marked is not None and marked <= up_to:
            del self.dirty[ca_id]

    async def list_revocations(
        self, ca_id: types.CAId, *, since: datetime | None = None
    ) -> Sequence[status_ports.RevokedEntry]:
        certs: dict[tuple[types.CAId, int], types.CertificateRecord] = getattr(
            self._source, "certs", {}
        )
        return [
            status_ports.RevokedEntry(
                serial=r.serial,
                revoked_at=int(r.revoked_at.timestamp()) if r.revoked_at else None,
                reason=r.revocation_reason,
            )
            for r in certs.values()
            if r.ca_id == ca_id
            and r.status is types.CertStatus.REVOKED
            and (since is None or r.revoked_at is None or r.revoked_at >= since)
        ]

    async def latest_crl_info(self, ca_id: types.CAId) -> tuple[int, datetime] | None:
        crls: list[types.CrlRecord] = getattr(self._source, "crls", [])
        mine = [c for c in crls if c.ca_id == ca_id]
        if not mine:
            return None
        newest = max(mine, key=lambda c: c.number)
        return newest.number, newest.this_update

    @contextlib.asynccontextmanager
    async def leader(self, name: str) -> AsyncIterator[bool]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
