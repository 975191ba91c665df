"""Engine value types shared by the engine, storage and the protocol front ends.

Frozen dataclasses and StrEnums only; no I/O and no imports from other layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import NewType

from cryptography import x509

__all__ = [
    "CA",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "CAId",
    "CAKind",
    "CAMode",
    "CAStatus",
    "CertQuery",
    "CertStatus",
    "CertificateInsert",
    "CertificatePage",
    "CertificateRecord",
    "CertificateRevocation",
    "CrlRecord",
    "IssuedCertificate",
    "KeyAlgorithm",
    "KeyHandle",
    "Principal",
    "RevocationReason",
    "Serial",
]

CAId = NewType("CAId", str)
Serial = NewType("Serial", int)


class KeyAlgorithm(StrEnum):
    """Key types privca generates and accepts (CA and leaf)."""

    RSA_2048 = "rsa2048"
    RSA_3072 = "rsa3072"
    RSA_4096 = "rsa4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    EC_P521 = "ec-p521"
    ED25519 = "ed25519"
    ML_DSA_44 = "ml-dsa-44"
    ML_DSA_65 = "ml-dsa-65"
    ML_DSA_87 = "ml-dsa-87"


class CAMode(StrEnum):
    """General-purpose CAs issue any profile; short-lived CAs only leaves <= 7 days."""

    GENERAL = "general"
    SHORT_LIVED = "short-lived"


class CAStatus(StrEnum):
    """A CA's lifecycle state.

    PENDING: an imported CA waiting for its externally signed certificate.
    DISABLED: issues nothing, still publishes CRLs/OCSP and accepts revocations.
    REVOKED: its certificate is revoked at its parent; it and its subtree issue
    nothing. Expiry is not stored: it follows from the certificate.
    """

    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


class CAKind(StrEnum):
    """What a CA is for; Matter kinds follow the Matter Core Specification ch. 6."""

    GENERAL = "general"
    MATTER_PAA = "matter-paa"
    MATTER_PAI = "matter-pai"
    MATTER_RCAC = "matter-rcac"
    MATTER_ICAC = "matter-icac"
    OCSP_SIGNER = "ocsp-signer"
    # The internal CA of admin API client certificates: never an ACME/EST issuer or anchor.
    ADMIN = "admin"


class CertStatus(StrEnum):
    """Stored status; expiry is derived from not_after at query time."""

    VALID = "valid"
    REVOKED = "revoked"


class RevocationReason(StrEnum):
    """RFC 5280 §5.3.1 CRLReason names (as used on the command line)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @property
    def code(self) -> int:
        """Return the RFC 5280 integer code (7 is unused)."""
        return _REASON_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> RevocationReason:
        """Return the reason for an RFC 5280 integer code; ValueError if unknown."""
        for reason, value in _REASON_CODES.items():
            if value == code:
                return reason
        raise ValueError(f"unknown CRL reason code {code}")


_REASON_CODES: dict[RevocationReason, int] = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.REMOVE_FROM_CRL: 8,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: an operator at the CLI, an ACME account, an EST user or device."""

    kind: str
    name: str
    # Where the request came from (client address, ``cli@host``): recorded in the audit
    # trail, never part of who the principal is.
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class KeyHandle:
    """Where a CA key lives: ``backend`` names the key backend, ``ref`` its locator.

    For the ``pkcs8`` backend ``blob`` holds the passphrase-encrypted PKCS#8 PEM; for
    ``pkcs11`` (a token key) and ``carried`` (an offline CA's key in the operator's
    file, ``custody``) only the public key (SubjectPublicKeyInfo DER).
    """

    backend: str
    ref: str
    blob: bytes = b""


@dataclass(frozen=True, slots=True)
class CA:
    """A certificate authority privca holds (root, intermediate, issuing or imported)."""

    id: CAId
    name: str
    parent_id: CAId | None
    tier: int
    key_algorithm: KeyAlgorithm
    key: KeyHandle
    status: CAStatus
    mode: CAMode
    kind: CAKind
    created_at: datetime
    # None exactly while PENDING (an import waiting for its certificate): every other
    # way a CA is made stores one, and activating an import sets it with ACTIVE.
    cert_der: bytes | None = None
    csr_der: bytes | None = None
    # Certificates above this CA up to and including the root, nearest first.
    chain_der: tuple[bytes, ...] = ()
    external: bool = False
    allowed_dns_suffixes: tuple[str, ...] = ()
    allowed_ip_networks: tuple[str, ...] = ()
    publish_revocation: bool = True
    # Offline: serving processes never load its key; its CRL and OCSP answers come
    # from ``privca ca sign-offline`` ceremonies (``server/ca/status/offline.py``).
    offline: bool = False
    # Bumped by every stored change of the row: a write names the version it read and
    # loses (``Repository.update_ca`` returns False) when anything changed since.
    version: int = 0

    @property
    def certificate(self) -> x509.Certificate:
        """Return the CA certificate; ValueError while an import is pending."""
        if self.cert_der is None:
            raise ValueError(f"CA {self.name} has no certificate yet")
        return x509.load_der_x509_certificate(self.cert_der)


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One issued certificate as stored (leaf or CA)."""

    ca_id: CAId
    serial: Serial
    der: bytes
    profile: str
    subject: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    requester: str
    status: CertStatus = CertStatus.VALID
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    is_ca: bool = False

    @property
    def serial_hex(self) -> str:
        """Return the serial as uppercase hex, as openssl prints it."""
        return format(self.serial, "X")


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A freshly issued certificate with its chain (nearest issuer first, root last)."""

    record: CertificateRecord
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key_pem: bytes | None = None


@dataclass(frozen=True, slots=True)
class CertQuery:
    """Inventory search; every field narrows, None means any."""

    ca_id: CAId | None = None
    # Any of these CAs (a scope's subtree); an empty set matches nothing.
    ca_ids: frozenset[CAId] | None = None
    status: CertStatus | None = None
    text: str | None = None
    expires_before: datetime | None = None
    expires_after: datetime | None = None
    serial: Serial | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class CertificatePage:
    """One page of an inventory search, newest first.

    ``next_cursor`` is opaque (the repository defines it); None on the last page.
    """

    records: tuple[CertificateRecord, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit trail record: who (``actor``), what, target, when (``at``), from where.

    ``seq``, ``prev_hash`` and ``hash`` are set when the record is appended to the
    hash chain (``server.ca.audit``); an event built by the engine leaves them empty.
    """

    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, str] = field(default_factory=dict)
    id: int | None = None
    source: str = ""
    seq: int | None = None
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True, slots=True)
class CertificateInsert:
    """A CA's certificate record, stored in the transaction of the CA write it goes with.

    ``audit`` is its ``cert.issue`` record, appended after the CA write's own.
    """

    record: CertificateRecord
    audit: AuditEvent


@dataclass(frozen=True, slots=True)
class CertificateRevocation:
    """A VALID certificate revoked in the transaction of the CA write it goes with.

    ``record`` is the certificate as read; ``audit`` is its ``cert.revoke`` record,
    appended before the CA write's own.
    """

    record: CertificateRecord
    at: datetime
    reason: RevocationReason
    audit: AuditEvent

    @property
    def revoked(self) -> CertificateRecord:
        """Return ``record`` as stored once the revocation is written."""
        return replace(
            self.record,
            status=CertStatus.REVOKED,
            revoked_at=self.at,
            revocation_reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """An audit log search; every field narrows, None means any.

    ``since`` is inclusive, ``until`` exclusive; ``actor``, ``action`` and ``target``
    match exactly. ``oldest_first`` pages in log order (an export), else newest first.
    """

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    limit: int = 100
    oldest_first: bool = False


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of an audit search; ``next_cursor`` is opaque, None on the last page."""

    events: tuple[AuditEvent, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CrlRecord:
    """A generated CRL kept for distribution (the newest per CA is served)."""

    ca_id: CAId
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes
