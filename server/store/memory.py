"""In-memory ``Repository`` for engine tests: same contract, no database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from server.ca import types
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import SerialConflictError

__all__ = ["MemoryRepository"]


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

    async def list_revoked(self, ca_id: types.CAId) -> Sequence[types.CertificateRecord]:
        return [
            r
            for r in self.certs.values()
            if r.ca_id == ca_id and r.status is types.CertStatus.REVOKED
        ]

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
