"""Admin roles, their permissions, and scopes (a CA and its subtree). Pure: no I/O.

One table says what each role may do; a scope is the name of a CA and covers that
CA and every CA below it (the same subtree rule as ``grants.Grant.cas``); no scope
covers every CA. ``refusal`` is the one authorization check the ``AdminService``
runs before every operation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from server.ca import grants
from server.ca.types import CA, CAId, Principal

__all__ = [
    "GLOBAL",
    "PERMISSIONS",
    "AdminPrincipal",
    "Permission",
    "Role",
    "covers",
    "issuance_grant",
    "refusal",
    "subtree_ids",
]


class Role(StrEnum):
    """What an admin identity is for."""

    OWNER = "owner"
    ISSUER = "issuer"
    APPROVER = "approver"
    AUDITOR = "auditor"


class Permission(StrEnum):
    """One kind of admin operation; names appear in denial audit records."""

    READ = "read"
    CREATE_ROOT = "ca.create-root"
    MANAGE_CA = "ca.manage"
    ISSUE = "cert.issue"
    REVOKE = "cert.revoke"
    APPROVE = "est.approve"
    AUDIT = "audit.read"


PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = {
    # Manage CAs at and below the scope: sub-CAs, disable, enable, revoke, renew, CRLs,
    # EST labels and accounts, ACME directories (and, unscoped, EAB keys), Matter CAs.
    Role.OWNER: frozenset({Permission.READ, Permission.CREATE_ROOT, Permission.MANAGE_CA}),
    # Issue and revoke leaf certificates of CAs in scope.
    Role.ISSUER: frozenset({Permission.READ, Permission.ISSUE, Permission.REVOKE}),
    # Decide EST enrollments waiting for approval in scope.
    Role.APPROVER: frozenset({Permission.READ, Permission.APPROVE}),
    # Read inventory and audit in scope.
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT}),
}

# A new root is above every scope: only an unscoped identity may make one.
_UNSCOPED_ONLY: Final = frozenset({Permission.CREATE_ROOT})
# The lineage of a resource outside every CA subtree: only unscoped identities reach it.
GLOBAL: Final[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """An authenticated admin identity (bearer token or admin client certificate)."""

    name: str
    role: Role
    scope: str | None
    via: str
    address: str | None = None

    @property
    def principal(self) -> Principal:
        """Return the engine principal: audit records name it ``admin:<name>``, from its
        client address."""
        return Principal("admin", self.name, source=self.address or "")


def covers(scope: str | None, lineage: Sequence[str]) -> bool:
    """Return whether ``scope`` covers a CA whose name and ancestors' names are ``lineage``."""
    return scope is None or scope in lineage


def refusal(
    who: AdminPrincipal, permission: Permission, lineage: Sequence[str] | None
) -> str | None:
    """Return why ``who`` may not do ``permission`` (on the CA of ``lineage``), or None.

    ``lineage`` None: an operation on no particular CA (a new root, a listing).
    ``lineage`` ``GLOBAL`` (empty): a resource of every CA or of none (EAB keys, the
    audit log, a label whose CA is unknown): no scope covers it.
    """
    if permission not in PERMISSIONS[who.role]:
        return f"role {who.role} may not {permission}"
    if permission in _UNSCOPED_ONLY and who.scope is not None:
        return f"{permission} needs an unscoped identity (scope is {who.scope})"
    if lineage is not None and not covers(who.scope, lineage):
        if not lineage:
            return f"this resource belongs to no CA subtree: scope {who.scope} does not cover it"
        return f"CA {lineage[0]} is outside scope {who.scope}"
    return None


def subtree_ids(cas: Sequence[CA], scope: str | None) -> frozenset[CAId]:
    """Return the ids of the CAs ``scope`` covers among ``cas``."""
    by_id = {ca.id: ca for ca in cas}
    out = set()
    for ca in cas:
        names: list[str] = []
        node: CA | None = ca
        while node is not None and len(names) <= 8:
            names.append(node.name)
            node = by_id.get(node.parent_id) if node.parent_id else None
        if covers(scope, names):
            out.add(ca.id)
    return frozenset(out)


def issuance_grant(base: grants.Grant, scope: str | None, lineage: Sequence[str]) -> grants.Grant:
    """Return ``base`` narrowed to the subtree of ``scope`` for the issuance pipeline.

    ``lineage`` is the scope CA's name and its ancestors'. A base grant that covers the
    scope's CA becomes a grant of exactly that subtree; one that covers only CAs inside
    (or outside) it stays as it is, and the admin scope check refuses the rest.
    """
    if scope is None:
        return base
    if grants.ANY in base.cas or any(name in base.cas for name in lineage):
        return replace(base, cas=frozenset({scope}))
    return base
