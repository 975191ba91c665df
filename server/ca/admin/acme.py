"""ACME through the admin API: named directories (scoped by their CA) and EAB keys.

A directory is in an identity's scope when its CA is. An External Account Binding
key admits an account to every directory that asks for one, so it belongs to no CA
subtree: only unscoped identities list, create or revoke EAB keys (owners for the
last two). The work is ``Directories``' and ``Accounts``', as the CLI does it.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from server.ca.acme import api as acme_api
from server.ca.admin import roles
from server.ca.admin.guard import Guard
from server.ca.admin.roles import AdminPrincipal, Permission
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA, Principal

__all__ = ["AcmeAdmin", "DirectoryView", "EabKeys"]


class EabKeys(Protocol):
    """The EAB key operations of ``acme_api.AcmeService.accounts``."""

    async def create_eab_key(self, *, actor: Principal) -> acme_api.EabKey:
        """Create a key (its MAC key is shown once)."""
        ...

    async def list_eab_keys(self) -> Sequence[acme_api.EabKey]:
        """Return every key."""
        ...

    async def revoke_eab_key(
        self, kid: str, *, actor: Principal, deactivate_accounts: bool = False
    ) -> Sequence[acme_api.AccountId]:
        """Revoke a key; return the accounts deactivated with it."""
        ...


@dataclass(frozen=True, slots=True)
class DirectoryView:
    """A named directory and its CA (None: the CA no longer exists)."""

    directory: acme_api.AcmeDirectory
    ca: CA | None


class AcmeAdmin:
    """ACME directories and EAB keys for admin identities."""

    def __init__(
        self,
        guard: Guard,
        directories: acme_api.Directories | None,
        eab: EabKeys | None,
    ) -> None:
        self._guard = guard
        self._directories = directories
        self._eab = eab

    def _dirs(self) -> acme_api.Directories:
        if self._directories is None:
            raise EngineError(ProblemKind.UNAVAILABLE, "ACME is not running in this process")
        return self._directories

    def _keys(self) -> EabKeys:
        if self._eab is None:
            raise EngineError(ProblemKind.UNAVAILABLE, "ACME is not running in this process")
        return self._eab

    async def _view(self, directory: acme_api.AcmeDirectory) -> DirectoryView:
        return DirectoryView(directory, await self._guard.find(directory.ca))

    async def _authorize(
        self, who: AdminPrincipal, permission: Permission, view: DirectoryView
    ) -> None:
        lineage = await self._guard.lineage(view.ca)
        await self._guard.check(who, permission, lineage, target=f"acme/{view.directory.name}")

    # ------------------------------------------------------------------ directories

    async def list_directories(self, who: AdminPrincipal) -> list[DirectoryView]:
        """Return the named directories whose CA is in the caller's scope (any role)."""
        await self._guard.authorize(who, Permission.READ, None, target="acme/directories")
        visible = await self._guard.visible(who)
        views = [await self._view(d) for d in await self._dirs().list_all()]
        return [v for v in views if who.scope is None or (v.ca is not None and v.ca.id in visible)]

    async def get_directory(self, who: AdminPrincipal, name: str) -> DirectoryView:
        """Return one directory in scope. Raises EngineError NOT_FOUND, UNAUTHORIZED."""
        view = await self._view(await self._dirs().get(name))
        await self._authorize(who, Permission.READ, view)
        return view

    async def create_directory(
        self, who: AdminPrincipal, directory: acme_api.AcmeDirectory
    ) -> DirectoryView:
        """Store a directory on a CA in scope (owners).

        Raises:
            EngineError: NOT_FOUND (CA), UNAUTHORIZED, CONFLICT, MALFORMED, INVALID_PROFILE.
        """
        ca = await self._guard.ca(directory.ca)
        view = DirectoryView(replace(directory, ca=ca.name, source="stored"), ca)
        await self._authorize(who, Permission.MANAGE_CA, view)
        await self._dirs().add(view.directory, actor=who.principal)
        return view

    async def delete_directory(self, who: AdminPrincipal, name: str) -> None:
        """Delete a stored directory (owners); its accounts can no longer log in.

        Raises:
            EngineError: NOT_FOUND (also for configured ones), UNAUTHORIZED.
        """
        view = await self._view(await self._dirs().get(name))
        await self._authorize(who, Permission.MANAGE_CA, view)
        await self._dirs().remove(view.directory.name, actor=who.principal)

    # ------------------------------------------------------------------ EAB keys

    async def list_eab_keys(self, who: AdminPrincipal) -> Sequence[acme_api.EabKey]:
        """Return every EAB key (unscoped identities; the caller hides MAC keys)."""
        await self._guard.check(who, Permission.READ, roles.GLOBAL, target="acme/eab-keys")
        return await self._keys().list_eab_keys()

    async def create_eab_key(self, who: AdminPrincipal) -> acme_api.EabKey:
        """Create an EAB key (unscoped owners); its MAC key is in the result, once.

        Raises:
            EngineError: UNAUTHORIZED.
        """
        await self._guard.check(who, Permission.MANAGE_CA, roles.GLOBAL, target="acme/eab-keys")
        return await self._keys().create_eab_key(actor=who.principal)

    async def revoke_eab_key(
        self, who: AdminPrincipal, kid: str, *, deactivate_accounts: bool
    ) -> Sequence[acme_api.AccountId]:
        """Revoke an EAB key (unscoped owners); return the accounts deactivated with it.

        Raises:
            EngineError: UNAUTHORIZED, NOT_FOUND.
        """
        await self._guard.check(who, Permission.MANAGE_CA, roles.GLOBAL, target=f"acme/{kid}")
        return await self._keys().revoke_eab_key(
            kid, actor=who.principal, deactivate_accounts=deactivate_accounts
        )
