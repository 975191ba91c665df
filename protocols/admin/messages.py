"""Admin API wire formats: JSON request parsing (to engine values) and response bodies.

Every malformed input becomes ``EngineError(MALFORMED)`` (a 400 problem
document), never an exception the middleware would call unexpected: bodies are
JSON objects with known fields only, numbers are bounded, enums are closed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.admin import links
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import (
    CAMode,
    CertificatePage,
    CertificateRecord,
    CertStatus,
    CrlRecord,
    KeyAlgorithm,
    RevocationReason,
)

__all__ = [
    "JSON_TYPES",
    "MAX_LIMIT",
    "PEM_CHAIN",
    "CreateCA",
    "IssueRequest",
    "ca_to_wire",
    "certificate_to_wire",
    "crl_to_wire",
    "decode_cursor",
    "encode_cursor",
    "page_to_wire",
    "parse_create_ca",
    "parse_issue",
    "parse_renew",
    "parse_revoke",
    "parse_serial",
    "pem_chain",
    "principal_to_wire",
    "read_json",
]

PEM_CHAIN: Final = "application/pem-certificate-chain"
JSON_TYPES: Final = frozenset({"application/json"})
MAX_LIMIT: Final = 500
_MAX_CSR: Final = 32 * 1024
_E = TypeVar("_E", CAMode, KeyAlgorithm, RevocationReason, CertStatus)


def _bad(detail: str) -> EngineError:
    return EngineError(ProblemKind.MALFORMED, detail)


async def read_json(request: web.Request, *, limit: int, optional: bool = False) -> dict[str, Any]:
    """Return the request body as a JSON object (``{}`` for an allowed empty body).

    Raises:
        EngineError: MALFORMED (not JSON, not an object).
        web.HTTPRequestEntityTooLarge: more than ``limit`` bytes (whatever the app's own limit).
        web.HTTPUnsupportedMediaType: a body that is not application/json.
    """
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if not raw and optional:
        return {}
    if request.content_type not in JSON_TYPES:
        raise web.HTTPUnsupportedMediaType(reason="send application/json")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)}")


def _str(body: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(f"{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise _bad(f"{key} must be a non-empty string")
    return value


def _int(body: Mapping[str, Any], key: str, *, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be an integer {low}..{high}")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be true or false")
    return value


def _enum(value: object, kind: type[_E], key: str) -> _E:
    if not isinstance(value, str):
        raise _bad(f"{key} must be one of {', '.join(kind)}")
    try:
        return kind(value)
    except ValueError:
        raise _bad(f"{key} must be one of {', '.join(kind)}") from None


@dataclass(frozen=True, slots=True)
class CreateCA:
    """A new root or subordinate CA."""

    name: str
    key_algorithm: KeyAlgorithm
    days: int | None
    path_length: int | None
    mode: CAMode


def parse_create_ca(body: Mapping[str, Any]) -> CreateCA:
    """Parse ``POST /cas`` and ``POST /cas/{ca}/subordinates``."""
    _only(body, {"name", "key_type", "days", "path_length", "mode"})
    key = body.get("key_type", str(KeyAlgorithm.EC_P256))
    mode = body.get("mode", str(CAMode.GENERAL))
    return CreateCA(
        name=_str(body, "name", required=True) or "",
        key_algorithm=_enum(key, KeyAlgorithm, "key_type"),
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
        path_length=_int(body, "path_length", low=0, high=4),
        mode=_enum(mode, CAMode, "mode"),
    )


def parse_revoke(body: Mapping[str, Any]) -> RevocationReason:
    """Parse a revocation body: ``{"reason": ...}`` (default unspecified)."""
    _only(body, {"reason"})
    return _enum(body.get("reason", "unspecified"), RevocationReason, "reason")


def parse_renew(body: Mapping[str, Any]) -> tuple[bool, int | None]:
    """Parse ``POST /cas/{ca}/renew``: ``rekey`` and ``days``."""
    _only(body, {"rekey", "days"})
    return _bool(body, "rekey"), _int(body, "days", low=1, high=admin_api.MAX_DAYS)


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """``POST /cas/{ca}/certificates``: a PEM CSR, a profile and a lifetime."""

    csr: bytes
    profile: str
    days: int | None


def parse_issue(body: Mapping[str, Any]) -> IssueRequest:
    """Parse an issuance request (the CSR is checked by the engine)."""
    _only(body, {"csr", "profile", "days"})
    csr = _str(body, "csr", required=True) or ""
    if len(csr) > _MAX_CSR or not csr.lstrip().startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        raise _bad("csr must be a PEM certificate request")
    return IssueRequest(
        csr=csr.encode(),
        profile=_str(body, "profile") or "tls-server",
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
    )


def parse_serial(value: str) -> int:
    """Parse a hex serial from a path (1-40 hex digits)."""
    if not 0 < len(value) <= 40 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise _bad("a serial is 1-40 hexadecimal digits")
    return int(value, 16)


def encode_cursor(cursor: str | None) -> str | None:
    """Wrap a repository cursor so clients treat it as opaque."""
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> str | None:
    """Unwrap a cursor this API handed out; MALFORMED for anything else."""
    if value is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise _bad("unknown cursor") from exc
    if not raw:
        raise _bad("unknown cursor")
    return raw


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ca_to_wire(view: admin_api.CAView) -> dict[str, Any]:
    """Return a CA as JSON."""
    ca = view.ca
    out: dict[str, Any] = {
        "name": ca.name,
        "id": ca.id,
        "tier": ca.tier,
        "state": view.state,
        "status": str(ca.status),
        "mode": str(ca.mode),
        "kind": str(ca.kind),
        "key_algorithm": str(ca.key_algorithm),
        "parent": view.parent,
        "external": ca.external,
        "offline": ca.offline,
        "subject": None,
        "serial": None,
        "not_before": None,
        "not_after": None,
        "links": {"self": links.ca_url(ca.name)},
    }
    if ca.cert_der is not None:
        cert = ca.certificate
        out |= {
            "subject": cert.subject.rfc4514_string(),
            "serial": format(cert.serial_number, "X"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
    return out


def certificate_to_wire(rec: CertificateRecord, *, now: datetime) -> dict[str, Any]:
    """Return a certificate record as JSON (``expired``: valid but past notAfter)."""
    status = str(rec.status)
    if rec.status is CertStatus.VALID and rec.not_after <= now:
        status = "expired"
    return {
        "serial": rec.serial_hex,
        "ca_id": rec.ca_id,
        "status": status,
        "subject": rec.subject,
        "sans": list(rec.sans),
        "profile": rec.profile,
        "is_ca": rec.is_ca,
        "not_before": rec.not_before.isoformat(),
        "not_after": rec.not_after.isoformat(),
        "issued_at": rec.issued_at.isoformat(),
        "requester": rec.requester,
        "revoked_at": _time(rec.revoked_at),
        "revocation_reason": str(rec.revocation_reason) if rec.revocation_reason else None,
        "links": {"self": links.certificate_url(rec.serial_hex, rec.ca_id)},
    }


def page_to_wire(page: CertificatePage, *, now: datetime) -> dict[str, Any]:
    """Return a page of certificates with the cursor of the next one (null: last page)."""
    return {
        "items": [certificate_to_wire(r, now=now) for r in page.records],
        "next_cursor": encode_cursor(page.next_cursor),
    }


def crl_to_wire(crl: CrlRecord) -> dict[str, Any]:
    """Return a freshly published CRL's metadata."""
    return {
        "ca_id": crl.ca_id,
        "number": crl.number,
        "this_update": crl.this_update.isoformat(),
        "next_update": crl.next_update.isoformat(),
    }


def principal_to_wire(who: admin_api.AdminPrincipal) -> dict[str, Any]:
    """Return the caller's identity and what its role allows."""
    return {
        "name": who.name,
        "role": str(who.role),
        "scope": who.scope,
        "via": who.via,
        "permissions": sorted(str(p) for p in admin_api.PERMISSIONS[who.role]),
    }


def pem_chain(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    """Return certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
