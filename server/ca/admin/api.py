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
from server.ca.admin.guard import KEY_BACKENDS, MAX_DAYS, MAX_HOURS
from server.ca.admin.matter import MAX_DAC_BATCH, MatterAdmin
from server.ca.admin.ports import AdminCertificate, AdminRepository, AdminToken, CrlPublisher
from server.ca.admin.roles import PERMISSIONS, AdminPrincipal, Permission, Role
from server.ca.admin.service import ANONYMOUS, AdminService, CAOptions, CAView
from server.ca.admin.tokens import PREFIX, hash_token
from server.ca.lifecycle import Renewal

__all__ = [
    "ANONYMOUS",
    "KEY_BACKENDS",
    "MAX_DAC_BATCH",
    "MAX_DAYS",
    "MAX_HOURS",
    "PERMISSIONS",
    "PREFIX",
    "AcmeAdmin",
    "AdminCertificate",
    "AdminPrincipal",
    "AdminRepository",
    "AdminService",
    "AdminToken",
    "AuditAdmin",
    "CAOptions",
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
