"""Admin bearer tokens: made once, stored as a hash, checked in constant time.

A token is ``pca_`` and 32 random bytes (urlsafe base64): 256 bits, so one
unsalted SHA-256 is enough to keep the database from holding anything usable (a
leaked table cannot be turned back into tokens by guessing). The secret is shown
once, at creation. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from server.ca.admin.ports import AdminRepository, AdminToken
from server.ca.admin.roles import Role
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import AuditEvent, Principal

__all__ = ["PREFIX", "TOKEN_LENGTH", "Tokens", "hash_token", "new_secret"]

PREFIX: Final = "pca_"
# ``pca_`` + base64url of 32 bytes (43 characters).
TOKEN_LENGTH: Final = len(PREFIX) + 43
# A token's last use is written at most this often (one write per request would
# double the cost of every admin call).
_TOUCH_EVERY: Final = timedelta(minutes=5)
_NAME_MAX: Final = 64


def new_secret() -> str:
    """Return a fresh token secret."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> str:
    """Return the stored form of a token: hex SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> None:
    """Refuse an identity name that is not 1-64 letters, digits, '-', '_' or '.'.

    Raises:
        EngineError: MALFORMED.
    """
    if (
        not name
        or len(name) > _NAME_MAX
        or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        or not name.isascii()
    ):
        raise EngineError(
            ProblemKind.MALFORMED, "admin names are 1-64 letters, digits, '-', '_' or '.'"
        )


class Tokens:
    """Create, list, revoke and check admin bearer tokens."""

    def __init__(self, repo: AdminRepository) -> None:
        self._repo = repo

    async def create(
        self,
        name: str,
        *,
        role: Role,
        scope: str | None,
        now: datetime,
        lifetime: timedelta,
        actor: Principal,
    ) -> tuple[AdminToken, str]:
        """Store a new token; return its record and the secret (never stored).

        Raises:
            EngineError: MALFORMED (name, lifetime), CONFLICT (name taken).
        """
        check_name(name)
        if lifetime <= timedelta(0):
            raise EngineError(ProblemKind.MALFORMED, "a token's lifetime must be positive")
        secret = new_secret()
        token = AdminToken(
            name=name,
            role=role,
            scope=scope,
            token_hash=hash_token(secret),
            created_at=now,
            expires_at=now + lifetime,
            created_by=str(actor),
        )
        detail = {"role": str(role), "scope": scope or "*", "expires": token.expires_at.isoformat()}
        audit = AuditEvent(
            at=now,
            actor=str(actor),
            action="admin.token-create",
            target=name,
            detail=detail,
            source=actor.source,
        )
        await self._repo.add_token(token, audit=audit)
        return token, secret

    async def list(self) -> Sequence[AdminToken]:
        """Return every token record (no secrets: there are none stored)."""
        return await self._repo.list_tokens()

    async def revoke(self, name: str, *, now: datetime, actor: Principal) -> None:
        """Revoke a token; it fails from the next request on.

        Raises:
            EngineError: NOT_FOUND (no live token of that name).
        """
        audit = AuditEvent(
            at=now, actor=str(actor), action="admin.token-revoke", target=name, source=actor.source
        )
        if not await self._repo.revoke_token(name, at=now, audit=audit):
            raise EngineError(ProblemKind.NOT_FOUND, f"no live admin token named {name!r}")

    async def check(self, secret: str, *, now: datetime) -> tuple[AdminToken | None, str | None]:
        """Return the token a secret belongs to and why it may not log in (None: it may).

        ``(None, reason)`` for a secret no token has.
        """
        if len(secret) != TOKEN_LENGTH or not secret.startswith(PREFIX):
            return None, "not a privca admin token"
        digest = hash_token(secret)
        token = await self._repo.token_by_hash(digest)
        # The lookup is by hash; the comparison repeats it in constant time so no
        # timing of a database index ever decides alone.
        if token is None or not hmac.compare_digest(token.token_hash, digest):
            return None, "unknown token"
        if token.revoked_at is not None:
            return token, "the token is revoked"
        if token.expires_at <= now:
            return token, "the token expired"
        if token.last_used_at is None or now - token.last_used_at >= _TOUCH_EVERY:
            await self._repo.touch_token(token.name, at=now)
        return token, None
