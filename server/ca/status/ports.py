"""Ports and value types of the revocation status services (OCSP, CRL scheduling).

``server/store/status_repository.py`` implements ``StatusRepository`` on SQL;
``MemoryStatusRepository`` here backs engine tests. Imports only engine types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from server.ca import types

__all__ = [
    "MemoryStatusRepository",
    "RevokedEntry",
    "SignerRecord",
    "StatusRepository",
    "StoredResponse",
]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A pre-signed OCSP response (SHA-1 CertID, no nonce) for one (issuer, serial)."""

    ca_id: types.CAId
    serial: types.Serial
    der: bytes
    cert_status: str
    this_update: datetime
    next_update: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SignerRecord:
    """A delegated OCSP signer certificate (id-kp-OCSPSigning, ocsp-nocheck) and its key."""

    ca_id: types.CAId
    serial: types.Serial
    cert_der: bytes
    key: types.KeyHandle
    not_before: datetime
    not_after: datetime
    created_at: datetime


class RevokedEntry(NamedTuple):
    """One CRL entry: only what the CRL needs, so a million of them stay cheap.

    ``revoked_at`` is whole seconds since the Unix epoch (UTC): an int costs a
    fraction of a datetime to fetch and to encode.
    """

    serial: int
    revoked_at: int | None
    reason: types.RevocationReason | None


class StatusRepository(Protocol):
    """Persistent state of the status services; every write is one transaction."""

    async def put_response(self, response: StoredResponse) -> None:
        """Insert or replace the pre-signed response of (ca_id, serial)."""
        ...

    async def get_response(self, ca_id: types.CAId, serial: types.Serial) -> StoredResponse | None:
        """Return the stored response of (ca_id, serial)."""
        ...

    async def changed_since(
        self, since: datetime, *, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial, datetime]]:
        """Return (ca_id, serial, updated_at) of responses replaced after ``since``."""
        ...

    async def stale_responses(
        self, produced_before: datetime, *, valid_after: datetime, limit: int
    ) -> Sequence[tuple[types.CAId, types.Serial]]:
        """Return responses signed before ``produced_before`` for certs not expired by then."""
        ...

    async def count_responses(self) -> int:
        """Return the number of stored responses."""
        ...

    async def add_signer(self, signer: SignerRecord) -> None:
        """Keep a new delegated signer."""
        ...

    async def current_signer(self, ca_id: types.CAId) -> SignerRecord | None:
        """Return the newest delegated signer of a CA."""
        ...

    async def mark_crl_dirty(self, ca_id: types.CAId, at: datetime) -> None:
        """Record that a CA's CRL misses a revocation made at ``at``."""
        ...

    async def dirty_crls(self) -> Sequence[tuple[types.CAId, datetime]]:
        """Return (ca_id, marked_at) of CAs whose CRL needs regenerating."""
        ...

    async def clear_crl_dirty(self, ca_id: types.CAId, *, up_to: datetime) -> None:
        """Forget the mark unless a revocation after ``up_to`` renewed it."""
        ...

    async def list_revocations(
        self, ca_id: types.CAId, *, since: datetime | None = None
    ) -> Sequence[RevokedEntry]:
        """Return serial, time and reason of the CA's revocations (at or after ``since``)."""
        ...

    async def latest_crl_info(self, ca_id: types.CAId) -> tuple[int, datetime] | None:
        """Return (number, thisUpdate) of a CA's newest CRL without loading it."""
        ...

    def leader(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Try to become the only node doing ``name`` (yields False if another holds it)."""
        ...


class MemoryStatusRepository:
    """Dict-backed ``StatusRepository`` for engine tests (revocations come from ``source``)."""

    def __init__(self, source: object | None = None) -> None:
        self.responses: dict[tuple[types.CAId, int], StoredResponse] = {}
        self.signers: list[SignerRecord] = []
        self.dirty: dict[types.CAId, datetime] = {}
        self._source = source
        self._locks: dict[str, asyncio.Lock] = {}

    async def put_response(self, response: StoredResponse) -> None:
        self.responses[(response.ca_id, response.serial)] = response

    async def get_response(self, ca_id: types.CAId, serial: types.Serial) -> StoredResponse | None:
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

    async def add_signer(self, signer: SignerRecord) -> None:
        self.signers.append(signer)

    async def current_signer(self, ca_id: types.CAId) -> SignerRecord | None:
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
    ) -> Sequence[RevokedEntry]:
        certs: dict[tuple[types.CAId, int], types.CertificateRecord] = getattr(
            self._source, "certs", {}
        )
        return [
            RevokedEntry(
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
