"""The admin engine facade: the one module ``protocols/admin`` and the CLI import.

Re-exports roles, identities and the ``AdminService``; the implementation lives in
``roles``, ``guard``, ``tokens``, ``certs``, ``est``, ``acme``, ``matter``,
``audit`` and ``service``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from server.ca.admin.acme import AcmeAdmin, DirectoryView, EabKeys
from server.ca.admin.audit import AuditAdmin
from server.ca.admin.est import EstAdmin, LabelView
from server.ca.admin.guard import MAX_DAYS
from server.ca.admin.matter import MatterAdmin
from server.ca.admin.ports import AdminCertificate, AdminRepository, AdminToken, CrlPublisher
from server.ca.admin.roles import PERMISSIONS, AdminPrincipal, Permission, Role
from server.ca.admin.service import ANONYMOUS, AdminService, CAView
from server.ca.admin.tokens import PREFIX, hash_token
from server.ca.lifecycle import Renewal

__all__ = [
    "ANONYMOUS",
    "MAX_DAYS",
    "PERMISSIONS",
    "PREFIX",
    "AcmeAdmin",
    "AdminCertificate",
    "AdminPrincipal",
    "AdminRepository",
    "AdminService",
    "AdminToken",
    "AuditAdmin",
    "CAView",
    "CrlPublisher",
    "DirectoryView",
    "EabKeys",
    "EstAdmin",
    "LabelView",
    "MatterAdmin",
    "Permission",
    "Renewal",
    "Role",
    "hash_token",
]
