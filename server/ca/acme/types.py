"""ACME engine value types: accounts, orders, authorizations, challenges, EAB keys.

Frozen dataclasses, StrEnums and NewTypes, plus ``new_id()`` for their ids; no
I/O. Must not import aiohttp, josepy or sqlalchemy. Front ends reach these
through ``server.ca.acme.api``.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, NewType

from server.ca.errors import ProblemKind, SubProblem

__all__ = [
    "DEFAULT_DIRECTORY",
    "Account",
    "AccountId",
    "AccountKey",
    "AccountStatus",
    "AcmeDirectory",
    "Authorization",
    "AuthzId",
    "AuthzStatus",
    "Challenge",
    "ChallengeStatus",
    "ChallengeType",
    "ClaimedOrder",
    "EabBinding",
    "EabKey",
    "Identifier",
    "IdentifierType",
    "Order",
    "OrderId",
    "OrderStatus",
    "StoredProblem",
    "new_id",
]

DEFAULT_DIRECTORY: Final = "default"
"""The directory served at ``/acme/directory`` (the global ``[acme]`` settings)."""

AccountId = NewType("AccountId", str)
OrderId = NewType("OrderId", str)
AuthzId = NewType("AuthzId", str)


def new_id() -> str:
    """Return a fresh unguessable object id (96 random bits, URL-safe)."""
    return secrets.token_urlsafe(12)


class AccountStatus(StrEnum):
    """RFC 8555 §7.1.6 account states."""

    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    """RFC 8555 §7.1.6 order states."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthzStatus(StrEnum):
    """RFC 8555 §7.1.6 authorization states."""

    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(StrEnum):
    """RFC 8555 §7.1.6 challenge states."""

    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class ChallengeType(StrEnum):
    """Challenge types privca validates."""

    HTTP_01 = "http-01"
    DNS_01 = "dns-01"
    TLS_ALPN_01 = "tls-alpn-01"


class IdentifierType(StrEnum):
    """RFC 8555 dns and RFC 8738 ip identifiers."""

    DNS = "dns"
    IP = "ip"


@dataclass(frozen=True, slots=True)
class Identifier:
    """An ACME identifier (type and value, values in canonical lower-case form)."""

    type: IdentifierType
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True, slots=True)
class StoredProblem:
    """A problem document kept on an order or a challenge (RFC 8555 §7.1.3, §7.1.5)."""

    kind: ProblemKind
    detail: str
    subproblems: tuple[SubProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountKey:
    """An account's public key as verified at the edge.

    ``jwk`` is the canonical JSON of the public JWK, ``thumbprint`` its RFC 7638
    thumbprint (base64url), ``spki`` the DER SubjectPublicKeyInfo.
    """

    jwk: str
    thumbprint: str
    spki: bytes


@dataclass(frozen=True, slots=True)
class Account:
    """An ACME account (RFC 8555 §7.1.2)."""

    id: AccountId
    status: AccountStatus
    key: AccountKey
    contact: tuple[str, ...]
    tos_agreed: bool
    created_at: datetime
    eab_kid: str | None = None
    # The directory the account was created in; it exists nowhere else (RFC 8555 §7.3).
    directory: str = DEFAULT_DIRECTORY


@dataclass(frozen=True, slots=True)
class AcmeDirectory:
    """A named ACME directory (``/acme/<name>/directory``): its CA and identifier policy.

    ``profiles`` lists the ACME profile names offered (None: every configured one);
    ``dns_suffixes`` and ``ip_ranges`` are what challenges may prove (``*`` in
    ``dns_suffixes``: any name); ``eab_required`` None follows the global setting.
    """

    name: str
    ca: str
    profiles: tuple[str, ...] | None = None
    dns_suffixes: tuple[str, ...] = ("*",)
    ip_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("0.0.0.0/0"),
        ipaddress.ip_network("::/0"),
    )
    wildcard: bool = True
    eab_required: bool | None = None
    source: str = "stored"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of an authorization; its URL is derived from (authz id, type)."""

    type: ChallengeType
    token: str
    status: ChallengeStatus = ChallengeStatus.PENDING
    validated: datetime | None = None
    error: StoredProblem | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """An authorization of one identifier for one account (RFC 8555 §7.1.4)."""

    id: AuthzId
    account_id: AccountId
    identifier: Identifier
    status: AuthzStatus
    expires: datetime
    challenges: tuple[Challenge, ...]
    wildcard: bool = False

    def challenge(self, kind: ChallengeType) -> Challenge | None:
        """Return the challenge of a type, None if this authorization has none."""
        return next((c for c in self.challenges if c.type is kind), None)


@dataclass(frozen=True, slots=True)
class Order:
    """An order (RFC 8555 §7.1.3); ``cert_ref`` names the issued certificate."""

    id: OrderId
    account_id: AccountId
    status: OrderStatus
    identifiers: tuple[Identifier, ...]
    authz_ids: tuple[AuthzId, ...]
    expires: datetime
    created_at: datetime
    profile: str
    not_before: datetime | None = None
    not_after: datetime | None = None
    error: StoredProblem | None = None
    cert_ref: str | None = None
    replaces: str | None = None
    authorizations: tuple[Authorization, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ClaimedOrder:
    """An order claimed for finalization (processing) ``since`` a time.

    ``csr_key_sha256`` is the SHA-256 (hex) of the CSR's SubjectPublicKeyInfo: a
    certificate for that key is the one this finalization issued. None for claims
    taken before it was recorded.
    """

    order: Order
    since: datetime
    csr_key_sha256: str | None


@dataclass(frozen=True, slots=True)
class EabKey:
    """An External Account Binding MAC key (RFC 8555 §7.3.4).

    ``account_ids`` lists every account bound with the key (one unless reuse is on).
    """

    kid: str
    hmac_key: bytes
    created_at: datetime
    revoked: bool = False
    account_ids: tuple[AccountId, ...] = ()


@dataclass(frozen=True, slots=True)
class EabBinding:
    """An EAB inner JWS as parsed at the edge, verified by the engine.

    The edge has checked the structure: HS256, url equals newAccount, payload
    equals the outer JWK. The engine checks the MAC with the stored key.
    """

    kid: str
    signing_input: bytes
    signature: bytes
