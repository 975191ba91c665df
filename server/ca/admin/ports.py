"""Admin identities as stored, and the storage port they live behind.

A token is stored as the SHA-256 of its secret only; an admin certificate identity
binds a role and scope to one certificate serial of the admin CA. ``server/store``
implements ``AdminRepository`` (SQL) and ``MemoryAdminRepository`` (tests).
Imports only engine types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.ca.admin.roles import Role
from server.ca.types import AuditEvent, CrlRecord

__all__ = ["AdminCertificate", "AdminRepository", "AdminToken", "CrlPublisher"]


@dataclass(frozen=True, slots=True)
class AdminToken:
    """A bearer token's record; ``token_hash`` is the hex SHA-256 of the secret."""

    name: str
    role: Role
    scope: str | None
    token_hash: str
    created_at: datetime
    expires_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AdminCertificate:
    """A role and scope bound to one admin CA certificate (by serial)."""

    serial: int
    name: str
    role: Role
    scope: str | None
    subject: str
    not_after: datetime
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def serial_hex(self) -> str:
        """Return the serial as uppercase hex, as openssl prints it."""
        return format(self.serial, "X")


class AdminRepository(Protocol):
    """Admin tokens and certificate identities; each write carries its audit event."""

    async def add_token(self, token: AdminToken, *, audit: AuditEvent) -> None:
        """Insert a token; ``EngineError(CONFLICT)`` if the name is taken."""
        ...

    async def token_by_hash(self, token_hash: str) -> AdminToken | None:
        """Return the token whose secret hashes to ``token_hash``."""
        ...

    async def list_tokens(self) -> Sequence[AdminToken]:
        """Return every token, by name."""
        ...

    async def revoke_token(self, name: str, *, at: datetime, audit: AuditEvent) -> bool:
        """Mark a live token revoked; False when there is none of that name."""
        ...

    async def touch_token(self, name: str, *, at: datetime) -> None:
        """Record that the token was used at ``at``."""
        ...

    async def add_certificate(self, cert: AdminCertificate, *, audit: AuditEvent) -> None:
        """Insert a certificate identity."""
        ...

    async def certificate_by_serial(self, serial: int) -> AdminCertificate | None:
        """Return the identity bound to an admin CA serial."""
        ...

    async def list_certificates(self) -> Sequence[AdminCertificate]:
        """Return every certificate identity, by name then creation."""
        ...

    async def revoke_certificates(
        self, name: str, *, at: datetime, audit: AuditEvent
    ) -> Sequence[AdminCertificate]:
        """Mark every live identity of ``name`` revoked; return them (as they were)."""
        ...


class CrlPublisher(Protocol):
    """The revocation service's CRL regeneration (``server.ca.status.api.StatusService``)."""

    async def generate_crl(self, ca: str | None, *, actor: str, source: str = "") -> CrlRecord:
        """Publish a fresh CRL of a CA now (audited as ``actor`` from ``source``)."""
        ...
