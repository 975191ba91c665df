"""EST engine types and the storage port the EST facade depends on.

Frozen value types (labels, enrollment accounts, pending approvals) and the
``EstRepository`` Protocol that ``server/store/est_repository.py`` implements on
SQL and ``server/store/est_memory.py`` in memory (for engine tests).
Imports only engine types; must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NewType, Protocol

from server.ca import types

__all__ = [
    "AuthMode",
    "CsrAttr",
    "EstLabel",
    "EstOperation",
    "EstRepository",
    "EstUser",
    "LoginBudget",
    "PendingEnrollment",
    "PendingId",
    "PendingStatus",
]

PendingId = NewType("PendingId", str)


class AuthMode(StrEnum):
    """How a client may authenticate to a label (RFC 7030 §3.2.3, §3.3.2)."""

    BASIC = "basic"
    CERT = "cert"


class EstOperation(StrEnum):
    """EST operations that issue a certificate."""

    ENROLL = "simpleenroll"
    REENROLL = "simplereenroll"
    SERVERKEYGEN = "serverkeygen"


class PendingStatus(StrEnum):
    """Life of an enrollment held for manual approval (RFC 7030 §4.2.3)."""

    PENDING = "pending"
    APPROVED = "approved"
    ISSUING = "issuing"
    ISSUED = "issued"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class CsrAttr:
    """One CsrAttrs entry (RFC 7030 §4.5.2): a bare OID, or an attribute with OID values."""

    oid: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CsrTemplate:
    """An RFC 9908 certification request template: what the CSR holds, values left to the client.

    ``subject_types``: attribute OIDs of the subject, one RDN each, in order;
    ``key_algorithm`` and ``key_curve``: the key's algorithm OID and, for EC, its
    named curve; ``extensions``: extension OIDs the client supplies (e.g.
    subjectAltName).
    """

    subject_types: tuple[str, ...] = ()
    key_algorithm: str | None = None
    key_curve: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EstLabel:
    """An EST label: which CA and profile, how clients authenticate, what they are told.

    ``trust_anchors_pem`` holds PEM certificates trusted for client-certificate
    authentication on this label; empty means the label's CA.
    ``csrattrs`` None means "derive from the profile".

    The name policy (``dns_suffixes`` .. ``max_days``) is what the label's clients
    may put in a certificate (``enrollment.label_grant``). Every empty field grants
    nothing of its kind, so a label without them issues device identities only: a
    subject name, no DNS/IP/URI/e-mail subjectAltName. ``subject_patterns`` are
    shell-style patterns over the RFC 4514 subject (empty: any subject);
    ``max_days`` None leaves the profile's limit.
    """

    name: str
    ca: str | None = None
    profile: str = "device"
    auth_modes: frozenset[AuthMode] = frozenset({AuthMode.BASIC, AuthMode.CERT})
    trust_anchors_pem: bytes = b""
    approval_required: bool = False
    allow_subject_change: bool = False
    csrattrs: tuple[CsrAttr, ...] | None = None
    source: str = "database"
    dns_suffixes: tuple[str, ...] = ()
    allow_wildcard: bool = False
    ip_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    uri_patterns: tuple[str, ...] = ()
    email_domains: tuple[str, ...] = ()
    subject_patterns: tuple[str, ...] = ()
    max_days: int | None = None


@dataclass(frozen=True, slots=True)
class EstUser:
    """An HTTP Basic enrollment account of one label; only a salted hash is kept.

    ``dns_suffixes``, ``subject_patterns`` and ``max_days`` narrow the label's
    grant for this account (``grants.narrow``); None keeps the label's.
    """

    label: str
    username: str
    password_hash: str
    created_at: datetime
    dns_suffixes: tuple[str, ...] | None = None
    subject_patterns: tuple[str, ...] | None = None
    max_days: int | None = None

    @property
    def is_narrowed(self) -> bool:
        """Return True when the account has less than its label's grant."""
        narrowing = (self.dns_suffixes, self.subject_patterns, self.max_days)
        return any(v is not None for v in narrowing)


@dataclass(frozen=True, slots=True)
class LoginBudget:
    """One failed-login token bucket: ``burst`` tokens, refilled at ``rate`` a second.

    ``tokens`` is the level at ``at`` (Unix seconds); a login attempt takes a token
    before its password is checked, and a success gives it back.
    """

    key: str
    rate: float
    burst: int
    tokens: float = 0.0
    at: float = 0.0

    def level(self, now: float) -> float:
        """Return the tokens in the bucket at ``now``: what it held plus the refill, capped."""
        return min(float(self.burst), self.tokens + max(0.0, now - self.at) * self.rate)

    def wait(self, now: float) -> int:
        """Return the whole seconds until a token is there again (0: one is there now)."""
        missing = 1.0 - self.level(now)
        return 0 if missing <= 0 else max(1, math.ceil(missing / self.rate))


@dataclass(frozen=True, slots=True)
class PendingEnrollment:
    """An enrollment request waiting for (or past) an operator's decision."""

    id: PendingId
    label: str
    operation: EstOperation
    requester: str
    key_fingerprint: str
    subject: str
    csr_der: bytes
    status: PendingStatus
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    ca_id: types.CAId | None = None
    serial: types.Serial | None = None


class EstRepository(Protocol):
    """Persistent EST state; every write is one short transaction."""

    async def add_label(self, label: EstLabel, *, audit: types.AuditEvent) -> None:
        """Insert a label; ``EngineError(CONFLICT)`` if the name exists."""
        ...

    async def get_label(self, name: str) -> EstLabel | None:
        """Return a stored label by name."""
        ...

    async def list_labels(self) -> Sequence[EstLabel]:
        """Return every stored label, by name."""
        ...

    async def remove_label(self, name: str, *, audit: types.AuditEvent) -> bool:
        """Delete a label and its accounts; False if it did not exist."""
        ...

    async def put_user(self, user: EstUser, *, audit: types.AuditEvent) -> None:
        """Create or replace an enrollment account."""
        ...

    async def get_user(self, label: str, username: str) -> EstUser | None:
        """Return one enrollment account."""
        ...

    async def list_users(self, label: str | None) -> Sequence[EstUser]:
        """Return the accounts of one label (None: every label)."""
        ...

    async def remove_user(self, label: str, username: str, *, audit: types.AuditEvent) -> bool:
        """Delete an account; False if it did not exist."""
        ...

    async def add_pending(
        self, pending: PendingEnrollment, *, audit: types.AuditEvent | None = None
    ) -> None:
        """Store a new pending enrollment (and its audit event, atomically)."""
        ...

    async def find_pending(
        self, label: str, requester: str, key_fingerprint: str
    ) -> PendingEnrollment | None:
        """Return the newest enrollment for (label, requester, key), whatever its status."""
        ...

    async def get_pending(self, pending_id: PendingId) -> PendingEnrollment | None:
        """Return one pending enrollment by id."""
        ...

    async def list_pending(self, status: PendingStatus | None) -> Sequence[PendingEnrollment]:
        """Return enrollments with ``status`` (None: all), oldest first."""
        ...

    async def transition_pending(
        self,
        pending_id: PendingId,
        *,
        from_status: PendingStatus,
        to_status: PendingStatus,
        at: datetime,
        by: str | None = None,
        ca_id: types.CAId | None = None,
        serial: types.Serial | None = None,
        audit: types.AuditEvent | None = None,
    ) -> bool:
        """Move an enrollment from one status to another atomically; False if it was not there."""
        ...

    async def take_login_tokens(
        self, budgets: Sequence[LoginBudget], *, now: float
    ) -> Sequence[LoginBudget]:
        """Take one token from each bucket, all or none, atomically across processes.

        A missing bucket starts full (``burst``); ``rate`` and ``burst`` of the
        arguments replace the stored ones. Returns the buckets that had no token
        (their stored state; empty: every token was taken), in which case none is taken.
        """
        ...

    async def return_login_tokens(self, keys: Sequence[str]) -> None:
        """Give one token back to each bucket (at most its ``burst``)."""
        ...

    async def get_login_budgets(self, keys: Sequence[str]) -> Sequence[LoginBudget]:
        """Return the stored buckets among ``keys`` (a missing one is full)."""
        ...

    async def prune_login_budgets(self, *, now: float) -> int:
        """Delete the buckets that have refilled by ``now`` (they read as full); return how many."""
        ...
