"""The EST engine facade: the one module ``protocols/est`` and the CLI import for EST logic.

Re-exports the EST value types (labels, accounts, pending approvals, CSR
attributes), the authenticated-client and enrollment results, the
``EstService`` composition, and the pure helpers around labels and passwords.
The implementation lives in one module per concept: ``labels``, ``users``,
``client_certs``, ``csrattrs``, ``enrollment``, wired in ``service``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from server.ca.est.enrollment import Enrolled, EnrollmentPending
from server.ca.est.identity import ClientIdentity
from server.ca.est.labels import (
    DEFAULT_LABEL,
    is_valid_label_name,
    label_json,
    parse_trust_anchors,
    policy_summary,
)
from server.ca.est.logins import LoginLimits
from server.ca.est.ports import (
    AuthMode,
    CsrAttr,
    CsrTemplate,
    EstLabel,
    EstOperation,
    EstUser,
    PendingEnrollment,
    PendingId,
    PendingStatus,
)
from server.ca.est.service import EstService
from server.ca.est.users import hash_password, verify_password_hash

__all__ = [
    "DEFAULT_LABEL",
    "AuthMode",
    "ClientIdentity",
    "CsrAttr",
    "CsrTemplate",
    "Enrolled",
    "EnrollmentPending",
    "EstLabel",
    "EstOperation",
    "EstService",
    "EstUser",
    "LoginLimits",
    "PendingEnrollment",
    "PendingId",
    "PendingStatus",
    "hash_password",
    "is_valid_label_name",
    "label_json",
    "parse_trust_anchors",
    "policy_summary",
    "verify_password_hash",
]
