"""Typed engine errors; protocols map ``ProblemKind`` to their own wire errors.

Imports nothing from the rest of the engine so every module can raise these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = [
    "STORAGE_RETRY_AFTER",
    "CAChangedError",
    "EngineError",
    "ProblemKind",
    "StorageUnavailableError",
    "SubProblem",
]


class ProblemKind(StrEnum):
    """What went wrong, independent of any protocol (RFC 8555 §6.7 plus a few)."""

    MALFORMED = "malformed"
    BAD_CSR = "badCSR"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    BAD_REVOCATION_REASON = "badRevocationReason"
    ALREADY_REVOKED = "alreadyRevoked"
    ALREADY_REPLACED = "alreadyReplaced"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    UNAUTHORIZED = "unauthorized"
    # No credentials, or credentials that identify no one (admin API: 401).
    UNAUTHENTICATED = "unauthenticated"
    # A deactivated or revoked account: ACME "unauthorized" with 401 (RFC 8555 §7.3.6).
    ACCOUNT_NOT_VALID = "accountNotValid"
    RATE_LIMITED = "rateLimited"
    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    ORDER_NOT_READY = "orderNotReady"
    BAD_NONCE = "badNonce"
    INVALID_CONTACT = "invalidContact"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    USER_ACTION_REQUIRED = "userActionRequired"
    CONNECTION = "connection"
    DNS = "dns"
    TLS = "tls"
    INCORRECT_RESPONSE = "incorrectResponse"
    CAA = "caa"
    INVALID_PROFILE = "invalidProfile"
    NOT_FOUND = "notFound"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    POLICY = "policy"
    SERVER_INTERNAL = "serverInternal"


@dataclass(frozen=True, slots=True)
class SubProblem:
    """A per-identifier problem (RFC 8555 §6.7.1)."""

    kind: ProblemKind
    detail: str
    identifier: str | None = None


@dataclass(eq=False)
class EngineError(Exception):
    """Raised by the engine with a user-safe ``detail``; never carries secrets."""

    kind: ProblemKind
    detail: str
    subproblems: tuple[SubProblem, ...] = field(default=())
    retry_after: int | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.kind}: {self.detail}")

    def __str__(self) -> str:
        return self.detail


# Seconds a client is asked to wait while storage is unreachable: outages seen in tests
# (a database restart, a dropped connection) heal within seconds.
STORAGE_RETRY_AFTER: Final = 5


@dataclass(eq=False)
class StorageUnavailableError(EngineError):
    """Raised by storage when the database cannot be reached (a known outage, not a bug).

    Front ends answer it as an outage: 503 with Retry-After (ACME ``serverInternal``,
    EST text/plain, OCSP ``tryLater``), logged in one line without a traceback.
    """

    kind: ProblemKind = ProblemKind.UNAVAILABLE
    detail: str = "storage is unavailable; try again later"
    retry_after: int | None = STORAGE_RETRY_AFTER


@dataclass(eq=False)
class CAChangedError(EngineError):
    """Raised when a CA's stored state changed between reading it and writing it back.

    Another node (or command) won the race, e.g. a revoke or set-offline committed while
    an enable ran (any change of the row bumps ``CA.version``); the losing write is not
    made. ``lifecycle`` revoke, set-offline and a renew's chain updates catch it and
    start again from what is stored; other callers report CONFLICT.
    """

    kind: ProblemKind = ProblemKind.CONFLICT
    detail: str = "the CA changed while this ran; read it again and retry"
