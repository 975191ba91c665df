"""The admin API's one authorization gate: resolve a CA, check the role table, audit refusals.

``Guard`` is shared by the ``AdminService`` and its parts (``est``, ``acme``,
``matter``, ``audit``): each operation resolves what it acts on, then calls
``authorize`` before anything else. A refusal writes an ``admin.denied`` audit
record (actor ``admin:<name>``, the client address as its source) and
raises ``EngineError``. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from server.ca.admin import roles
from server.ca.admin.roles import AdminPrincipal, Permission
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA, AuditEvent, CAKind

__all__ = [
    "ANONYMOUS",
    "KEY_BACKENDS",
    "MAX_DAYS",
    "MAX_HOURS",
    "Guard",
    "lifetime",
]

_log = logging.getLogger(__name__)

ANONYMOUS: Final = "anonymous"
# Lifetimes a request may ask for (days): beyond this a date overflows nothing but
# means nothing either.
MAX_DAYS: Final = 36_500
MAX_HOURS: Final = MAX_DAYS * 24
# Key backends a request may name for a new CA key, as ``--key-backend`` offers them;
# front ends refuse anything else (the carried-key backend, a typo). The engine then
# refuses a backend this server has not configured (no [pkcs11] token: no pkcs11).
KEY_BACKENDS: Final = frozenset({"pkcs8", "pkcs11"})


def lifetime(days: int | None, hours: int | None = None) -> timedelta | None:
    """Return a requested lifetime in days or hours as a timedelta (None: the default).

    Raises:
        EngineError: MALFORMED outside 1..MAX_DAYS (1..MAX_HOURS), or both given.
    """
    if days is not None and hours is not None:
        raise EngineError(ProblemKind.MALFORMED, "give days or hours, not both")
    if hours is not None:
        if not 1 <= hours <= MAX_HOURS:
            raise EngineError(ProblemKind.MALFORMED, f"hours must be 1..{MAX_HOURS}")
        return timedelta(hours=hours)
    if days is None:
        return None
    if not 1 <= days <= MAX_DAYS:
        raise EngineError(ProblemKind.MALFORMED, f"days must be 1..{MAX_DAYS}")
    return timedelta(days=days)


class Guard:
    """Authorization and denial auditing over the engine's CAs."""

    def __init__(self, engine: CAEngine) -> None:
        self._engine = engine

    async def deny(
        self,
        who: AdminPrincipal | None,
        *,
        kind: ProblemKind,
        action: str,
        target: str,
        reason: str,
        address: str | None,
        name: str | None = None,
    ) -> EngineError:
        """Write the denial's audit record; return the error to raise."""
        detail = {"action": action, "reason": reason}
        if who is not None:
            detail |= {"role": str(who.role), "scope": who.scope or "*", "via": who.via}
        actor = f"admin:{who.name if who is not None else name or ANONYMOUS}"
        await self._engine.record_audit(
            AuditEvent(
                at=self._engine.now(),
                actor=actor,
                action="admin.denied",
                target=target,
                detail=detail,
                source=address or "",
            )
        )
        _log.warning(
            "admin API: denied %s %s to %s from %s: %s", action, target, actor, address, reason
        )
        return EngineError(kind, reason)

    async def lineage(self, ca: CA | None) -> tuple[str, ...]:
        """Return the names of ``ca`` and its ancestors (``roles.GLOBAL`` for no CA)."""
        if ca is None:
            return roles.GLOBAL
        return tuple(c.name for c in await self._engine.lineage(ca))

    async def check(
        self,
        who: AdminPrincipal,
        permission: Permission,
        lineage: Sequence[str] | None,
        *,
        target: str,
    ) -> None:
        """Refuse (audited) unless ``who`` may do ``permission`` on the CA of ``lineage``.

        Raises:
            EngineError: UNAUTHORIZED.
        """
        why = roles.refusal(who, permission, lineage)
        if why is not None:
            raise await self.deny(
                who,
                kind=ProblemKind.UNAUTHORIZED,
                action=str(permission),
                target=target,
                reason=why,
                address=who.address,
            )

    async def authorize(
        self, who: AdminPrincipal, permission: Permission, ca: CA | None, *, target: str
    ) -> None:
        """Refuse (audited) unless ``who`` may do ``permission`` on ``ca`` (None: on no CA).

        Raises:
            EngineError: UNAUTHORIZED.
        """
        lineage = await self.lineage(ca) if ca is not None else None
        await self.check(who, permission, lineage, target=target)

    async def ca(self, ref: str) -> CA:
        """Return a CA the admin API manages (the admin CA is not one of them).

        Raises:
            EngineError: NOT_FOUND.
        """
        ca = await self._engine.find_ca(ref)
        if ca is None or ca.kind is CAKind.ADMIN:
            raise EngineError(ProblemKind.NOT_FOUND, f"unknown CA {ref!r}")
        return ca

    async def find(self, ref: str | None) -> CA | None:
        """Return a managed CA by name or id (None: the default issuing CA), None if absent."""
        ref = ref or self._engine.settings.default_ca
        if ref is None:
            return None
        ca = await self._engine.find_ca(ref)
        return None if ca is None or ca.kind is CAKind.ADMIN else ca

    async def visible(self, who: AdminPrincipal) -> frozenset[str]:
        """Return the ids of the managed CAs in ``who``'s scope."""
        cas = [c for c in await self._engine.list_cas() if c.kind is not CAKind.ADMIN]
        return roles.subtree_ids(cas, who.scope)

    async def scope_lineage(self, scope: str | None) -> tuple[str, ...]:
        """Return the names of a scope's CA and its ancestors (empty: unscoped)."""
        if scope is None:
            return ()
        ca = await self._engine.find_ca(scope)
        return tuple(c.name for c in await self._engine.lineage(ca)) if ca else (scope,)
