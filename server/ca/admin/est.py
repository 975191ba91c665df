"""EST through the admin API: labels, enrollment accounts and held enrollments, scoped.

A label is in an identity's scope when its CA is (a label without a CA uses the
default issuing CA); its accounts and held enrollments go with it. A label whose
CA is unknown (or absent with no default) belongs to no subtree: only unscoped
identities reach it. Owners manage labels and accounts, approvers decide held
enrollments, every role reads. The work is ``EstService``'s, as the CLI does it.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from server.ca.admin.guard import Guard
from server.ca.admin.roles import AdminPrincipal, Permission
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.types import CA

__all__ = ["EstAdmin", "LabelView"]


@dataclass(frozen=True, slots=True)
class LabelView:
    """A label as the admin API shows it, with the CA it issues from now (None: unknown)."""

    label: est_api.EstLabel
    issuing_ca: CA | None


class EstAdmin:
    """EST labels, accounts and approvals for admin identities."""

    def __init__(self, guard: Guard, est: est_api.EstService | None) -> None:
        self._guard = guard
        self._est = est

    def _service(self) -> est_api.EstService:
        if self._est is None:
            raise EngineError(ProblemKind.UNAVAILABLE, "EST is not running in this process")
        return self._est

    async def _label(self, name: str) -> LabelView:
        """Return a label and its CA. Raises EngineError NOT_FOUND, UNAVAILABLE."""
        label = await self._service().get_label(name)
        return LabelView(label, await self._guard.find(label.ca))

    async def _authorize(
        self, who: AdminPrincipal, permission: Permission, view: LabelView, *, target: str
    ) -> None:
        lineage = await self._guard.lineage(view.issuing_ca)
        await self._guard.check(who, permission, lineage, target=target)

    # ------------------------------------------------------------------ labels

    async def list_labels(self, who: AdminPrincipal) -> list[LabelView]:
        """Return the labels whose CA is in the caller's scope (any role)."""
        await self._guard.authorize(who, Permission.READ, None, target="est/labels")
        visible = await self._guard.visible(who)
        out = []
        for label in await self._service().list_labels():
            ca = await self._guard.find(label.ca)
            if who.scope is None or (ca is not None and ca.id in visible):
                out.append(LabelView(label, ca))
        return out

    async def get_label(self, who: AdminPrincipal, name: str) -> LabelView:
        """Return one label in scope. Raises EngineError NOT_FOUND, UNAUTHORIZED."""
        view = await self._label(name)
        await self._authorize(who, Permission.READ, view, target=f"est/{view.label.name}")
        return view

    async def create_label(self, who: AdminPrincipal, label: est_api.EstLabel) -> LabelView:
        """Store a label on a CA in scope (owners); ``label.ca`` None: the default CA.

        Raises:
            EngineError: NOT_FOUND (CA), UNAUTHORIZED, CONFLICT, MALFORMED, INVALID_PROFILE.
        """
        ca = await self._guard.ca(label.ca) if label.ca is not None else None
        view = LabelView(label, ca or await self._guard.find(None))
        await self._authorize(who, Permission.MANAGE_CA, view, target=f"est/{label.name}")
        # Stored by name: an id given in the request names the same CA.
        stored = replace(label, ca=ca.name if ca is not None else None, source="database")
        await self._service().add_label(stored, actor=who.principal)
        return LabelView(stored, view.issuing_ca)

    async def delete_label(self, who: AdminPrincipal, name: str) -> None:
        """Delete a stored label and its accounts (owners).

        Raises:
            EngineError: NOT_FOUND (also for configured and built-in labels), UNAUTHORIZED.
        """
        view = await self._label(name)
        await self._authorize(who, Permission.MANAGE_CA, view, target=f"est/{name}")
        await self._service().remove_label(view.label.name, actor=who.principal)

    # ------------------------------------------------------------------ accounts

    async def list_users(self, who: AdminPrincipal, label: str) -> Sequence[est_api.EstUser]:
        """Return a label's accounts (the caller renders them without password hashes).

        Raises:
            EngineError: NOT_FOUND (label), UNAUTHORIZED.
        """
        view = await self._label(label)
        await self._authorize(who, Permission.READ, view, target=f"est/{label}/users")
        return await self._service().list_users(view.label.name)

    async def put_user(
        self,
        who: AdminPrincipal,
        label: str,
        username: str,
        password: str,
        *,
        dns_suffixes: tuple[str, ...] | None,
        subject_patterns: tuple[str, ...] | None,
        max_days: int | None,
    ) -> est_api.EstUser:
        """Create an account or reset its password and narrowing (owners).

        Raises:
            EngineError: NOT_FOUND (label), UNAUTHORIZED, MALFORMED.
        """
        view = await self._label(label)
        await self._authorize(
            who, Permission.MANAGE_CA, view, target=f"est/{view.label.name}/{username}"
        )
        return await self._service().add_user(
            view.label.name,
            username,
            password,
            actor=who.principal,
            dns_suffixes=dns_suffixes,
            subject_patterns=subject_patterns,
            max_days=max_days,
        )

    async def delete_user(self, who: AdminPrincipal, label: str, username: str) -> None:
        """Delete an account (owners). Raises EngineError NOT_FOUND, UNAUTHORIZED."""
        view = await self._label(label)
        await self._authorize(
            who, Permission.MANAGE_CA, view, target=f"est/{view.label.name}/{username}"
        )
        await self._service().remove_user(view.label.name, username, actor=who.principal)

    # ------------------------------------------------------------------ approvals

    async def _pending_label(self, pending: est_api.PendingEnrollment) -> LabelView:
        try:
            return await self._label(pending.label)
        except EngineError as exc:
            if exc.kind is not ProblemKind.NOT_FOUND:
                raise
            # The label is gone: its enrollments belong to no subtree.
            return LabelView(est_api.EstLabel(name=pending.label), None)

    async def list_pending(
        self, who: AdminPrincipal, status: est_api.PendingStatus | None
    ) -> list[est_api.PendingEnrollment]:
        """Return held enrollments of labels in scope, oldest first (any role)."""
        await self._guard.authorize(who, Permission.READ, None, target="est/pending")
        visible = await self._guard.visible(who)
        out = []
        labels: dict[str, LabelView] = {}
        for pending in await self._service().list_pending(status):
            view = labels.get(pending.label) or await self._pending_label(pending)
            labels[pending.label] = view
            ca = view.issuing_ca
            if who.scope is None or (ca is not None and ca.id in visible):
                out.append(pending)
        return out

    async def decide(
        self, who: AdminPrincipal, pending_id: str, *, approve: bool
    ) -> est_api.PendingEnrollment:
        """Approve or reject a held enrollment of a label in scope (approvers).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, CONFLICT (already decided).
        """
        est = self._service()
        pending = await est.get_pending(pending_id)
        view = await self._pending_label(pending)
        await self._authorize(who, Permission.APPROVE, view, target=f"est/pending/{pending.id}")
        await est.decide(pending.id, approve=approve, actor=who.principal)
        return await est.get_pending(pending.id)
