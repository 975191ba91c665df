"""Ports and value types of the revocation status services (OCSP, CRL scheduling).

``server/store/status_repository.py`` implements ``StatusRepository`` on SQL and
``server/store/memory.py`` in memory for engine tests. Imports only engine types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from server.ca import types

__all__ = [
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

    async def list_signers(self, ca_id: types.CAId) -> Sequence[SignerRecord]:
        """Return every delegated signer kept for a CA, oldest first."""
        ...

    async def remove_signer(
        self, ca_id: types.CAId, serial: types.Serial, *, audit: types.AuditEvent
    ) -> bool:
        """Forget a delegated signer and its key handle, with ``audit`` in the same write.

        Returns whether it was there; when it was not, nothing is recorded.
        """
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
