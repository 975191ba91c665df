"""One table from engine ``ProblemKind`` to wire errors (RFC 7807 / RFC 8555 §6.7).

Front ends render ``Problem`` in their own format; internal detail never leaks
(``serverInternal`` always carries a generic message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from server.ca.errors import EngineError, ProblemKind

__all__ = ["ACME_URN", "Problem", "from_engine_error", "internal_error", "status_of"]

ACME_URN: Final = "urn:ietf:params:acme:error:"

# ProblemKind -> HTTP status. Types are ACME URNs for the kinds RFC 8555 defines.
_STATUS: Final[dict[ProblemKind, int]] = {
    ProblemKind.MALFORMED: 400,
    ProblemKind.BAD_CSR: 400,
    ProblemKind.BAD_PUBLIC_KEY: 400,
    ProblemKind.BAD_SIGNATURE_ALGORITHM: 400,
    ProblemKind.BAD_REVOCATION_REASON: 400,
    ProblemKind.ALREADY_REVOKED: 400,
    ProblemKind.REJECTED_IDENTIFIER: 400,
    ProblemKind.UNSUPPORTED_IDENTIFIER: 400,
    ProblemKind.UNAUTHORIZED: 403,
    ProblemKind.UNAUTHENTICATED: 401,
    ProblemKind.ACCOUNT_NOT_VALID: 401,
    ProblemKind.RATE_LIMITED: 429,
    ProblemKind.ACCOUNT_DOES_NOT_EXIST: 400,
    ProblemKind.EXTERNAL_ACCOUNT_REQUIRED: 400,
    ProblemKind.ORDER_NOT_READY: 403,
    ProblemKind.BAD_NONCE: 400,
    ProblemKind.INVALID_CONTACT: 400,
    ProblemKind.UNSUPPORTED_CONTACT: 400,
    ProblemKind.USER_ACTION_REQUIRED: 403,
    ProblemKind.CONNECTION: 400,
    ProblemKind.DNS: 400,
    ProblemKind.TLS: 400,
    ProblemKind.INCORRECT_RESPONSE: 403,
    ProblemKind.CAA: 403,
    ProblemKind.INVALID_PROFILE: 400,
    ProblemKind.NOT_FOUND: 404,
    ProblemKind.CONFLICT: 409,
    ProblemKind.ALREADY_REPLACED: 409,
    ProblemKind.UNAVAILABLE: 503,
    ProblemKind.POLICY: 403,
    ProblemKind.SERVER_INTERNAL: 500,
}

# Kinds without an RFC 8555 type are rendered with the closest ACME type.
_ACME_TYPE: Final[dict[ProblemKind, str]] = {
    ProblemKind.NOT_FOUND: "malformed",
    ProblemKind.CONFLICT: "malformed",
    ProblemKind.UNAVAILABLE: "serverInternal",
    ProblemKind.POLICY: "unauthorized",
    ProblemKind.ACCOUNT_NOT_VALID: "unauthorized",
    ProblemKind.UNAUTHENTICATED: "unauthorized",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 7807 problem with ACME subproblems and extra headers."""

    kind: ProblemKind
    detail: str
    status: int
    subproblems: tuple[dict[str, object], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def type_urn(self) -> str:
        """Return the ``urn:ietf:params:acme:error:*`` type."""
        return ACME_URN + _ACME_TYPE.get(self.kind, str(self.kind))

    def to_json(self) -> dict[str, object]:
        """Return the problem document body."""
        body: dict[str, object] = {
            "type": self.type_urn,
            "detail": self.detail,
            "status": self.status,
        }
        if self.subproblems:
            body["subproblems"] = list(self.subproblems)
        return body


def status_of(kind: ProblemKind) -> int:
    """Return the HTTP status for an engine problem kind."""
    return _STATUS.get(kind, 500)


def _identifier(value: str) -> dict[str, str]:
    kind, _, rest = value.partition(":")
    return {"type": kind if kind in {"dns", "ip"} else "dns", "value": rest or value}


def from_engine_error(err: EngineError) -> Problem:
    """Convert an engine error to a problem (the one place this mapping lives)."""
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
    subs: tuple[dict[str, object], ...] = tuple(
        {
            "type": ACME_URN + _ACME_TYPE.get(s.kind, str(s.kind)),
            "detail": s.detail,
            **({"identifier": _identifier(s.identifier)} if s.identifier else {}),
        }
        for s in err.subproblems
    )
    detail = err.detail if err.kind is not ProblemKind.SERVER_INTERNAL else "internal error"
    return Problem(
        kind=err.kind,
        detail=detail,
        status=status_of(err.kind),
        subproblems=subs,
        headers=headers,
    )


def internal_error(request_id: str) -> Problem:
    """Return the generic problem for an unexpected exception (details only in the log)."""
    return Problem(
        kind=ProblemKind.SERVER_INTERNAL,
        detail=f"internal error (request {request_id})",
        status=500,
    )
