"""ACME wire objects: request payloads in, resource JSON out (RFC 8555 §7.1, §7.3-7.6).

Payload parsers check JSON types and convert to engine arguments; renderers
turn engine objects into the JSON clients expect. Must not decide anything:
statuses, limits and policy come from the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocols.acme.links import Links
from protocols.common import problem
from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "AccountUpdate",
    "NewAccount",
    "NewOrder",
    "Revocation",
    "account_to_wire",
    "authz_to_wire",
    "challenge_to_wire",
    "order_to_wire",
    "rfc3339",
]


def _malformed(detail: str) -> EngineError:
    return EngineError(ProblemKind.MALFORMED, detail)


def rfc3339(value: datetime) -> str:
    """Return an RFC 3339 UTC timestamp."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _malformed(f"{what} must be an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _malformed(f"{what} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise _malformed(f"{what} needs a time zone")
    return parsed.astimezone(UTC)


def _contact(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise _malformed("contact must be an array of strings")
    return tuple(value)


def _bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise _malformed(f"{name} must be a boolean")
    return value


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A newAccount payload (RFC 8555 §7.3)."""

    contact: tuple[str, ...]
    tos_agreed: bool
    only_return_existing: bool
    eab: object | None

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> NewAccount:
        """Parse and type-check. Raises: EngineError MALFORMED."""
        return cls(
            contact=_contact(payload.get("contact")) or (),
            tos_agreed=_bool(payload, "termsOfServiceAgreed"),
            only_return_existing=_bool(payload, "onlyReturnExisting"),
            eab=payload.get("externalAccountBinding"),
        )


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """An account update payload (RFC 8555 §7.3.2, §7.3.6)."""

    contact: tuple[str, ...] | None
    deactivate: bool

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> AccountUpdate:
        """Parse and type-check. Raises: EngineError MALFORMED."""
        status = payload.get("status")
        if status not in (None, "deactivated", "valid"):
            raise _malformed("an account's status can only be changed to deactivated")
        return cls(contact=_contact(payload.get("contact")), deactivate=status == "deactivated")


def _identifier(value: object) -> tuple[str, str]:
    if not isinstance(value, dict) or set(value) - {"type", "value"}:
        raise _malformed("an identifier is an object with type and value")
    kind, ident = value.get("type"), value.get("value")
    if not isinstance(kind, str) or not isinstance(ident, str) or not ident:
        raise _malformed("identifier type and value must be non-empty strings")
    return kind, ident


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A newOrder payload (RFC 8555 §7.4, RFC 9773 replaces, profiles draft)."""

    identifiers: tuple[tuple[str, str], ...]
    not_before: datetime | None
    not_after: datetime | None
    profile: str | None
    replaces: str | None

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> NewOrder:
        """Parse and type-check. Raises: EngineError MALFORMED."""
        idents = payload.get("identifiers")
        if not isinstance(idents, list) or not idents:
            raise _malformed("identifiers must be a non-empty array")
        profile, replaces = payload.get("profile"), payload.get("replaces")
        if profile is not None and not isinstance(profile, str):
            raise _malformed("profile must be a string")
        if replaces is not None and not isinstance(replaces, str):
            raise _malformed("replaces must be a string")
        return cls(
            identifiers=tuple(_identifier(i) for i in idents),
            not_before=_parse_time(payload.get("notBefore"), "notBefore"),
            not_after=_parse_time(payload.get("notAfter"), "notAfter"),
            profile=profile,
            replaces=replaces,
        )


def new_authz_identifier(payload: dict[str, Any]) -> tuple[str, str]:
    """Return the identifier of a newAuthz payload. Raises: EngineError MALFORMED."""
    return _identifier(payload.get("identifier"))


def finalize_csr(payload: dict[str, Any], decode: Any) -> bytes:
    """Return the DER CSR of a finalize payload. Raises: EngineError MALFORMED."""
    if "csr" not in payload:
        raise _malformed("finalize needs a csr")
    der: bytes = decode(payload["csr"], "csr")
    if not der:
        raise EngineError(ProblemKind.BAD_CSR, "the CSR is empty")
    return der


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revokeCert payload (RFC 8555 §7.6)."""

    certificate: bytes
    reason: int | None

    @classmethod
    def from_wire(cls, payload: dict[str, Any], decode: Any) -> Revocation:
        """Parse and type-check. Raises: EngineError MALFORMED."""
        if "certificate" not in payload:
            raise _malformed("revokeCert needs a certificate")
        reason = payload.get("reason")
        if reason is not None and (isinstance(reason, bool) or not isinstance(reason, int)):
            raise _malformed("reason must be an integer")
        return cls(certificate=decode(payload["certificate"], "certificate"), reason=reason)


def problem_json(p: acme_api.StoredProblem) -> dict[str, object]:
    """Render a stored problem as an RFC 7807 document body."""
    return problem.from_engine_error(EngineError(p.kind, p.detail, p.subproblems)).to_json()


def account_to_wire(account: acme_api.Account, links: Links) -> dict[str, object]:
    """Render an account object (RFC 8555 §7.1.2)."""
    body: dict[str, object] = {
        "status": str(account.status),
        "contact": list(account.contact),
        "termsOfServiceAgreed": account.tos_agreed,
        "orders": links.orders(account.id),
        "key": json.loads(account.key.jwk),
        "createdAt": rfc3339(account.created_at),
    }
    if account.eab_kid:
        body["externalAccountBinding"] = {"kid": account.eab_kid}
    return body


def challenge_to_wire(authz_id: str, chall: acme_api.Challenge, links: Links) -> dict[str, object]:
    """Render a challenge object (RFC 8555 §8)."""
    body: dict[str, object] = {
        "type": str(chall.type),
        "url": links.challenge(authz_id, chall.type),
        "status": str(chall.status),
        "token": chall.token,
    }
    if chall.validated is not None:
        body["validated"] = rfc3339(chall.validated)
    if chall.error is not None:
        body["error"] = problem_json(chall.error)
    return body


def authz_to_wire(authz: acme_api.Authorization, links: Links) -> dict[str, object]:
    """Render an authorization object (RFC 8555 §7.1.4)."""
    challenges = authz.challenges
    if authz.status is acme_api.AuthzStatus.VALID:
        # §7.1.4: a valid authorization lists only the challenge that validated it.
        challenges = (
            tuple(c for c in challenges if c.status is acme_api.ChallengeStatus.VALID) or challenges
        )
    body: dict[str, object] = {
        "identifier": {"type": str(authz.identifier.type), "value": authz.identifier.value},
        "status": str(authz.status),
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_to_wire(authz.id, c, links) for c in challenges],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


def order_to_wire(order: acme_api.Order, links: Links, *, profile: str) -> dict[str, object]:
    """Render an order object (RFC 8555 §7.1.3)."""
    body: dict[str, object] = {
        "status": str(order.status),
        "expires": rfc3339(order.expires),
        "identifiers": [{"type": str(i.type), "value": i.value} for i in order.identifiers],
        "authorizations": [links.authz(a) for a in order.authz_ids],
        "finalize": links.finalize(order.id),
        "profile": profile,
    }
    if order.not_before is not None:
        body["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        body["notAfter"] = rfc3339(order.not_after)
    if order.cert_ref and order.status is acme_api.OrderStatus.VALID:
        body["certificate"] = links.certificate(order.cert_ref)
    if order.error is not None:
        body["error"] = problem_json(order.error)
    if order.replaces:
        body["replaces"] = order.replaces
    return body
