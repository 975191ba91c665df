"""In-memory ``AdminRepository`` for engine tests (same contract as the SQL one)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from server.ca import types
from server.ca.admin.api import AdminCertificate, AdminToken
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAuditChain

__all__ = ["MemoryAdminRepository"]


class MemoryAdminRepository:
    """Dict-backed admin identities; ``chain`` may be shared with a ``MemoryRepository``."""

    def __init__(self, chain: MemoryAuditChain | None = None) -> None:
        self.chain = chain or MemoryAuditChain()
        self.tokens: dict[str, AdminToken] = {}
        self.certs: dict[int, AdminCertificate] = {}
        self.audit: list[types.AuditEvent] = self.chain.records
        self._lock = asyncio.Lock()

    async def add_token(self, token: AdminToken, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            if token.name in self.tokens:
                raise EngineError(
                    ProblemKind.CONFLICT, f"an admin token named {token.name!r} already exists"
                )
            self.tokens[token.name] = token
            self.chain.append([audit])

    async def token_by_hash(self, token_hash: str) -> AdminToken | None:
        return next((t for t in self.tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self) -> Sequence[AdminToken]:
        return sorted(self.tokens.values(), key=lambda t: t.name)

    async def revoke_token(self, name: str, *, at: datetime, audit: types.AuditEvent) -> bool:
        async with self._lock:
            token = self.tokens.get(name)
            if token is None or token.revoked_at is not None:
                return False
            self.tokens[name] = replace(token, revoked_at=at)
            self.chain.append([audit])
            return True

    async def touch_token(self, name: str, *, at: datetime) -> None:
        async with self._lock:
            if name in self.tokens:
                self.tokens[name] = replace(self.tokens[name], last_used_at=at)

    async def add_certificate(self, cert: AdminCertificate, *, audit: types.AuditEvent) -> None:
        async with self._lock:
            self.certs[cert.serial] = cert
            self.chain.append([audit])

    async def certificate_by_serial(self, serial: int) -> AdminCertificate | None:
        return self.certs.get(serial)

    async def list_certificates(self) -> Sequence[AdminCertificate]:
        return sorted(self.certs.values(), key=lambda c: (c.name, c.created_at, c.serial))

    async def revoke_certificates(
        self, name: str, *, at: datetime, audit: types.AuditEvent
    ) -> Sequence[AdminCertificate]:
        async with self._lock:
            live = [c for c in self.certs.values() if c.name == name and c.revoked_at is None]
            for cert in live:
                self.certs[cert.serial] = replace(cert, revoked_at=at)
            if live:
                self.chain.append([audit])
            return live
