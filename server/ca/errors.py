"""Typed engine errors; protocols map ``ProblemKind`` to their own wire errors.

Imports nothing from the rest of the engine so every module can raise these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["EngineError", "ProblemKind", "SubProblem"]


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
