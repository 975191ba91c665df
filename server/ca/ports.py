"""Ports the engine depends on: storage, time and randomness.

``server/store`` implements ``Repository`` on SQLAlchemy, ``server/store/memory.py``
in memory for engine tests. Imports only engine types.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from server.ca import audit as trail
from server.ca import types

__all__ = ["Clock", "Repository", "SerialConflictError", "SystemClock", "random_serial"]


class SerialConflictError(Exception):
    """Raised by a repository when (ca_id, serial) already exists."""


class Clock(Protocol):
    """Source of the current time (aware UTC)."""

    def now(self) -> datetime:
        """Return the current time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current time, aware UTC."""
        return datetime.now(UTC)


def random_serial() -> types.Serial:
    """Return a positive 127-bit serial from the CSPRNG (RFC 5280: at most 20 octets)."""
    # 16 random bytes with the top bit cleared: positive, >= 64 bits of entropy.
    return types.Serial(secrets.randbits(127) | (1 << 64))


class Repository(Protocol):
    """Persistent state of the CA engine; every write is one transaction."""

    async def add_ca(
        self,
        ca: types.CA,
        *,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
    ) -> None:
        """Insert a CA and, in the same transaction, its certificate record.

        The audit chain gets ``audit`` then ``certificate.audit``, in one append. Either
        everything is written or nothing.

        Raises:
            EngineError: CONFLICT if the name exists.
            SerialConflictError: ``certificate``'s (issuer, serial) is taken.
        """
        ...

    async def update_ca(
        self,
        ca: types.CA,
        *,
        expected_version: int,
        audit: types.AuditEvent,
        certificate: types.CertificateInsert | None = None,
        revocation: types.CertificateRevocation | None = None,
    ) -> bool:
        """Replace a CA row (status, certificate, chain, key, flags) if it is unchanged.

        Compare-and-set on the stored ``version`` (``expected_version``: the one the
        caller read), in the write's own transaction; the row is stored with version
        ``expected_version + 1`` (``ca.version`` is ignored). False (and no audit) when
        any writer changed the row since the caller read it, whatever it changed.

        In the same transaction, ``certificate`` inserts the CA's new certificate record
        (a renewal) and ``revocation`` revokes a certificate that must still be VALID (a
        sub-CA's at its parent; when it is not, nothing is written and the result is
        False). The audit chain gets ``revocation.audit``, ``audit``, ``certificate.audit``
        (those given), in one append.

        Raises:
            SerialConflictError: ``certificate``'s (issuer, serial) is taken; nothing
                was written.
        """
        ...

    async def replace_ca_key(
        self,
        ca_id: types.CAId,
        *,
        old: types.KeyHandle,
        new: types.KeyHandle,
        audit: types.AuditEvent,
    ) -> bool:
        """Swap a CA's key handle if it is still ``old`` (re-wrapping); False if it was not.

        Bumps the row's version like ``update_ca``.
        """
        ...

    async def get_ca(self, ca_id: types.CAId) -> types.CA | None:
        """Return a CA by id."""
        ...

    async def get_ca_by_name(self, name: str) -> types.CA | None:
        """Return a CA by its unique name."""
        ...

    async def list_cas(self) -> Sequence[types.CA]:
        """Return every CA, oldest first."""
        ...

    async def add_certificate(
        self, record: types.CertificateRecord, *, audit: types.AuditEvent
    ) -> None:
        """Insert an issued certificate; ``SerialConflictError`` on a duplicate serial."""
        ...

    async def get_certificate(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertificateRecord | None:
        """Return one certificate by issuer and serial."""
        ...

    async def certificate_status(
        self, ca_id: types.CAId, serial: types.Serial
    ) -> types.CertStatus | None:
        """Return only the status of one certificate (None: unknown); a per-request check."""
        ...

    async def list_certificates(self, query: types.CertQuery) -> Sequence[types.CertificateRecord]:
        """Return certificates matching ``query``, newest first."""
        ...

    async def page_certificates(
        self, query: types.CertQuery, *, cursor: str | None = None
    ) -> types.CertificatePage:
        """Return up to ``query.limit`` matches after ``cursor``, newest first.

        Raises:
            EngineError: MALFORMED for a cursor this repository did not hand out.
        """
        ...

    async def revoke_certificate(
        self,
        ca_id: types.CAId,
        serial: types.Serial,
        *,
        at: datetime,
        reason: types.RevocationReason,
        audit: types.AuditEvent,
    ) -> types.CertificateRecord | None:
        """Mark a valid certificate revoked; None if it was not VALID (or is absent)."""
        ...

    async def add_crl(self, crl: types.CrlRecord, *, audit: types.AuditEvent) -> None:
        """Keep a generated CRL and its audit record, in one transaction."""
        ...

    async def latest_crl(self, ca_id: types.CAId) -> types.CrlRecord | None:
        """Return the CRL with the highest number for a CA."""
        ...

    async def next_crl_number(self, ca_id: types.CAId) -> int:
        """Atomically reserve the next CRL number for a CA (monotonic, from 1)."""
        ...

    async def add_audit(self, event: types.AuditEvent) -> None:
        """Append an audit event to the hash chain."""
        ...

    async def list_audit(self, *, limit: int = 100) -> Sequence[types.AuditEvent]:
        """Return the newest audit events first."""
        ...

    async def audit_page(self, *, after_seq: int, limit: int) -> Sequence[types.AuditEvent]:
        """Return up to ``limit`` chained records with seq above ``after_seq``, in seq order."""
        ...

    async def audit_head(self) -> trail.ChainHead:
        """Return the chain head (seq and hash of the last record appended)."""
        ...

    async def page_audit(
        self, query: types.AuditQuery, *, cursor: str | None = None
    ) -> types.AuditPage:
        """Return up to ``query.limit`` matching events after ``cursor``.

        Raises:
            EngineError: MALFORMED for a cursor this repository did not hand out.
        """
        ...
