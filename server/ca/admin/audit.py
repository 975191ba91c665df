"""The audit log through the admin API: search a page at a time, export all of it.

Audit records name targets of every kind (CAs, certificates, labels, accounts,
directories, EAB keys, tokens, denials), several of which belong to no CA
subtree, and a record's scope cannot be told from its target alone. So the
audit log is read by unscoped auditors only; a scoped auditor is refused (403,
audited) with a detail saying why. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Final

from server.ca.admin import roles
from server.ca.admin.guard import Guard
from server.ca.admin.roles import AdminPrincipal, Permission
from server.ca.api import CAEngine
from server.ca.types import AuditEvent, AuditPage, AuditQuery

__all__ = ["EXPORT_PAGE", "AuditAdmin"]

# Rows an export reads per query: one short transaction each, bounded memory.
EXPORT_PAGE: Final = 500


class AuditAdmin:
    """Audit search and export for unscoped auditors."""

    def __init__(self, guard: Guard, engine: CAEngine) -> None:
        self._guard = guard
        self._engine = engine

    async def _authorize(self, who: AdminPrincipal, *, target: str) -> None:
        await self._guard.check(who, Permission.AUDIT, roles.GLOBAL, target=target)

    async def page(
        self, who: AdminPrincipal, query: AuditQuery, *, cursor: str | None
    ) -> AuditPage:
        """Return one page of matching records, newest first (unscoped auditors).

        Raises:
            EngineError: UNAUTHORIZED, MALFORMED (cursor).
        """
        await self._authorize(who, target="audit")
        return await self._engine.page_audit(replace(query, oldest_first=False), cursor=cursor)

    async def export(self, who: AdminPrincipal, query: AuditQuery) -> AsyncIterator[AuditEvent]:
        """Authorize now, then return every matching record oldest first, page by page.

        Raises:
            EngineError: UNAUTHORIZED (before anything is read).
        """
        await self._authorize(who, target="audit/export")
        return self._stream(replace(query, oldest_first=True, limit=EXPORT_PAGE))

    async def _stream(self, query: AuditQuery) -> AsyncIterator[AuditEvent]:
        cursor: str | None = None
        while True:
            page = await self._engine.page_audit(query, cursor=cursor)
            for event in page.events:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
