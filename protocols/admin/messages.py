"""Admin API wire formats: JSON request parsing (to engine values) and response bodies.

Every malformed input becomes ``EngineError(MALFORMED)`` (a 400 problem
document), never an exception the middleware would call unexpected: bodies are
JSON objects with known fields only, numbers are bounded, enums are closed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, TypeVar

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.admin import links
from protocols.common import body as body_reader
from server.ca.acme import api as acme_api
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.matter import api as matter_api
from server.ca.types import (
    AuditEvent,
    AuditPage,
    AuditQuery,
    CAMode,
    CertificatePage,
    CertificateRecord,
    CertStatus,
    CrlRecord,
    KeyAlgorithm,
    RevocationReason,
)

__all__ = [
    "JSONL",
    "JSON_TYPES",
    "MAX_LIMIT",
    "PEM_CHAIN",
    "CreateCA",
    "DacBatchRequest",
    "ImportRequest",
    "IssueRequest",
    "MatterCARequest",
    "MatterLeafRequest",
    "UserRequest",
    "audit_line",
    "audit_page_to_wire",
    "audit_to_wire",
    "ca_to_wire",
    "certificate_to_wire",
    "crl_to_wire",
    "dac_batch_to_wire",
    "decode_cursor",
    "directory_to_wire",
    "eab_key_to_wire",
    "encode_cursor",
    "label_to_wire",
    "page_to_wire",
    "parse_activate",
    "parse_audit_query",
    "parse_create_ca",
    "parse_dac_batch",
    "parse_directory",
    "parse_eab_revoke",
    "parse_import",
    "parse_issue",
    "parse_label",
    "parse_matter_ca",
    "parse_matter_leaf",
    "parse_pending_status",
    "parse_renew",
    "parse_revoke",
    "parse_serial",
    "parse_user",
    "pem_chain",
    "pending_to_wire",
    "principal_to_wire",
    "read_json",
    "user_to_wire",
]

PEM_CHAIN: Final = "application/pem-certificate-chain"
JSON_TYPES: Final = frozenset({"application/json"})
MAX_LIMIT: Final = 500
_MAX_CSR: Final = 32 * 1024
_MAX_CHAIN: Final = 64 * 1024
_MAX_SUBJECT: Final = 1024
_E = TypeVar(
    "_E",
    CAMode,
    KeyAlgorithm,
    RevocationReason,
    CertStatus,
    est_api.AuthMode,
    est_api.PendingStatus,
)


def _bad(detail: str) -> EngineError:
    return EngineError(ProblemKind.MALFORMED, detail)


async def read_json(request: web.Request, *, limit: int, optional: bool = False) -> dict[str, Any]:
    """Return the request body as a JSON object (``{}`` for an allowed empty body).

    Raises:
        EngineError: MALFORMED (not JSON, not an object).
        web.HTTPRequestEntityTooLarge: more than ``limit`` bytes (whatever the app's own limit).
        web.HTTPUnsupportedMediaType: a body that is not application/json, or in a
            content coding (``body.UnsupportedCodingError``).
        web.HTTPBadRequest: the body ended early or its framing is malformed.
    """
    raw = await body_reader.read(request, limit=limit)
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
    """A new root or subordinate CA (``options``: what else ``ca create-*`` takes)."""

    name: str
    key_algorithm: KeyAlgorithm
    days: int | None
    path_length: int | None
    mode: CAMode
    options: admin_api.CAOptions


_CA_FIELDS: Final = frozenset(
    {"name", "key_type", "days", "path_length", "mode", "subject"}
    | {"permit_dns", "permit_ip", "key_backend"}
)
# Only a subordinate has an identifier policy of its own and a revocation choice.
_SUB_FIELDS: Final = frozenset({"allow_dns", "allow_ip", "publish_revocation"})


def _subject(body: Mapping[str, Any]) -> str | None:
    """Return a requested subject DN as text (the engine parses it), bounded in size."""
    subject = _str(body, "subject")
    if subject is not None and len(subject) > _MAX_SUBJECT:
        raise _bad(f"subject must be at most {_MAX_SUBJECT} characters")
    return subject


def _key_backend(body: Mapping[str, Any]) -> str | None:
    """Return a requested key backend: one the API offers (never ``carried``), or None."""
    backend = _str(body, "key_backend")
    if backend is not None and backend not in admin_api.KEY_BACKENDS:
        raise _bad(f"key_backend must be one of {', '.join(sorted(admin_api.KEY_BACKENDS))}")
    return backend


def parse_create_ca(body: Mapping[str, Any], *, subordinate: bool = False) -> CreateCA:
    """Parse ``POST /cas`` or (``subordinate``) ``POST /cas/{ca}/subordinates``.

    The subject, name constraints and networks are checked by the engine as the
    CLI's are (MALFORMED); here their shape and size.
    """
    _only(body, set(_CA_FIELDS | (_SUB_FIELDS if subordinate else frozenset())))
    key = body.get("key_type", str(KeyAlgorithm.EC_P256))
    mode = body.get("mode", str(CAMode.GENERAL))
    subject = _subject(body)
    backend = _key_backend(body)
    publish = body.get("publish_revocation")
    if publish is not None and not isinstance(publish, bool):
        raise _bad("publish_revocation must be true or false")
    return CreateCA(
        name=_str(body, "name", required=True) or "",
        key_algorithm=_enum(key, KeyAlgorithm, "key_type"),
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
        path_length=_int(body, "path_length", low=0, high=4),
        mode=_enum(mode, CAMode, "mode"),
        options=admin_api.CAOptions(
            subject=subject,
            permit_dns=_strs(body, "permit_dns") or (),
            permit_ip=_strs(body, "permit_ip") or (),
            key_backend=backend,
            allow_dns=_strs(body, "allow_dns") or (),
            allow_ip=tuple(str(n) for n in _networks(body, "allow_ip") or ()),
            publish_revocation=publish,
        ),
    )


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """``POST /cas/imports``: a CA whose certificate an external CA will sign."""

    name: str
    key_algorithm: KeyAlgorithm
    subject: str | None
    mode: CAMode
    key_backend: str | None


def parse_import(body: Mapping[str, Any]) -> ImportRequest:
    """Parse ``POST /cas/imports`` (the subject is parsed by the engine)."""
    _only(body, {"name", "key_type", "subject", "mode", "key_backend"})
    subject = _subject(body)
    return ImportRequest(
        name=_str(body, "name", required=True) or "",
        key_algorithm=_enum(
            body.get("key_type", str(KeyAlgorithm.EC_P256)), KeyAlgorithm, "key_type"
        ),
        subject=subject,
        mode=_enum(body.get("mode", str(CAMode.GENERAL)), CAMode, "mode"),
        key_backend=_key_backend(body),
    )


def parse_activate(body: Mapping[str, Any]) -> bytes:
    """Parse ``POST /cas/{ca}/activate``: ``certificate``, PEM, the CA's first, then its issuers."""
    _only(body, {"certificate"})
    pem = _str(body, "certificate", required=True) or ""
    if len(pem) > _MAX_CHAIN or not pem.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        raise _bad("certificate must be PEM certificates: the CA's, then its chain to the root")
    return pem.encode()


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
    hours: int | None = None


def parse_issue(body: Mapping[str, Any]) -> IssueRequest:
    """Parse an issuance request (the CSR is checked by the engine); ``days`` or ``hours``."""
    _only(body, {"csr", "profile", "days", "hours"})
    csr = _str(body, "csr", required=True) or ""
    if len(csr) > _MAX_CSR or not csr.lstrip().startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        raise _bad("csr must be a PEM certificate request")
    return IssueRequest(
        csr=csr.encode(),
        profile=_str(body, "profile") or "tls-server",
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
        hours=_int(body, "hours", low=1, high=admin_api.MAX_HOURS),
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
        "csr": None,
        "links": {"self": links.ca_url(ca.name)},
    }
    if ca.csr_der is not None and ca.cert_der is None:
        csr = x509.load_der_x509_csr(ca.csr_der)
        out["csr"] = csr.public_bytes(serialization.Encoding.PEM).decode()
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


# ---------------------------------------------------------------------- EST

_MAX_ITEMS: Final = 64
_MAX_ITEM: Final = 253
_MAX_ANCHORS: Final = 64 * 1024


def _strs(body: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > _MAX_ITEMS
        or not all(isinstance(v, str) and 0 < len(v) <= _MAX_ITEM for v in value)
    ):
        raise _bad(f"{key} must be a list of at most {_MAX_ITEMS} non-empty strings")
    return tuple(value)


def _networks(
    body: Mapping[str, Any], key: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    values = _strs(body, key)
    if values is None:
        return None
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except ValueError:
        raise _bad(f"{key} must be a list of IP ranges (CIDR)") from None


_MAX_OID: Final = 128
_MAX_OID_VALUES: Final = 16


def _oid(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_OID:
        raise _bad(f"csrattrs: an OID is a dotted string of at most {_MAX_OID} characters")
    return value


def _csrattrs(body: Mapping[str, Any]) -> tuple[est_api.CsrAttr, ...] | None:
    """Return ``csrattrs`` (RFC 7030 §4.5.2): None derives them from the profile.

    Each item is ``{"oid": "1.2.840.113549.1.9.7"}`` (a bare OID) or an attribute
    with OID values, ``{"oid": ..., "values": [...]}``: ``--csrattr OID=V1,V2``.
    The engine checks every OID.
    """
    value = body.get("csrattrs")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise _bad(f"csrattrs must be a list of at most {_MAX_ITEMS} objects")
    out = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"oid", "values"} or "oid" not in item:
            raise _bad('csrattrs items are {"oid": ..., "values": [...]}')
        values = item.get("values", [])
        if not isinstance(values, list) or len(values) > _MAX_OID_VALUES:
            raise _bad(f"csrattrs values must be a list of at most {_MAX_OID_VALUES} OIDs")
        out.append(est_api.CsrAttr(oid=_oid(item["oid"]), values=tuple(_oid(v) for v in values)))
    return tuple(out)


def parse_label(body: Mapping[str, Any]) -> est_api.EstLabel:
    """Parse ``POST /est/labels`` (the name policy as ``privca est label add`` takes it)."""
    _only(
        body,
        {
            "name",
            "ca",
            "profile",
            "auth",
            "trust_anchors",
            "approval_required",
            "allow_subject_change",
            "csrattrs",
            "allow_dns",
            "allow_wildcard",
            "allow_ip",
            "allow_uri",
            "allow_email",
            "subject",
            "max_days",
        },
    )
    anchors = _str(body, "trust_anchors") or ""
    if len(anchors) > _MAX_ANCHORS:
        raise _bad("trust_anchors is too long")
    auth = body.get("auth", [str(m) for m in est_api.AuthMode])
    if not isinstance(auth, list) or not auth:
        raise _bad(f"auth must be a non-empty list of {', '.join(est_api.AuthMode)}")
    return est_api.EstLabel(
        name=_str(body, "name", required=True) or "",
        ca=_str(body, "ca"),
        profile=_str(body, "profile") or "device",
        auth_modes=frozenset(_enum(m, est_api.AuthMode, "auth") for m in auth),
        trust_anchors_pem=anchors.encode(),
        approval_required=_bool(body, "approval_required"),
        allow_subject_change=_bool(body, "allow_subject_change"),
        csrattrs=_csrattrs(body),
        dns_suffixes=_strs(body, "allow_dns") or (),
        allow_wildcard=_bool(body, "allow_wildcard"),
        ip_ranges=_networks(body, "allow_ip") or (),
        uri_patterns=_strs(body, "allow_uri") or (),
        email_domains=_strs(body, "allow_email") or (),
        subject_patterns=_strs(body, "subject") or (),
        max_days=_int(body, "max_days", low=1, high=admin_api.MAX_DAYS),
    )


def label_to_wire(view: admin_api.LabelView) -> dict[str, Any]:
    """Return an EST label as JSON: ``privca est label list --json``'s, plus its CA and link."""
    lb = view.label
    return {
        **est_api.label_json(lb),
        "issuing_ca": view.issuing_ca.name if view.issuing_ca is not None else None,
        "links": {"self": links.label_url(lb.name)},
    }


@dataclass(frozen=True, slots=True)
class UserRequest:
    """``POST /est/labels/{label}/users``: an account, its password and its narrowing."""

    username: str
    password: str
    dns_suffixes: tuple[str, ...] | None
    subject_patterns: tuple[str, ...] | None
    max_days: int | None


def parse_user(body: Mapping[str, Any]) -> UserRequest:
    """Parse an account creation or password reset (checked by the EST service)."""
    _only(body, {"username", "password", "allow_dns", "subject", "max_days"})
    return UserRequest(
        username=_str(body, "username", required=True) or "",
        password=_str(body, "password", required=True) or "",
        dns_suffixes=_strs(body, "allow_dns"),
        subject_patterns=_strs(body, "subject"),
        max_days=_int(body, "max_days", low=1, high=admin_api.MAX_DAYS),
    )


def user_to_wire(user: est_api.EstUser) -> dict[str, Any]:
    """Return an enrollment account as JSON: never its password hash."""
    return {
        "label": user.label,
        "username": user.username,
        "created_at": user.created_at.isoformat(),
        "allow_dns": list(user.dns_suffixes) if user.dns_suffixes is not None else None,
        "subject": list(user.subject_patterns) if user.subject_patterns is not None else None,
        "max_days": user.max_days,
    }


def parse_pending_status(value: str | None) -> est_api.PendingStatus | None:
    """Parse ``?status=`` of the approval queue (default pending; ``all``: every one)."""
    if value is None:
        return est_api.PendingStatus.PENDING
    if value == "all":
        return None
    return _enum(value, est_api.PendingStatus, "status")


def pending_to_wire(p: est_api.PendingEnrollment) -> dict[str, Any]:
    """Return a held enrollment as JSON."""
    return {
        "id": p.id,
        "label": p.label,
        "operation": str(p.operation),
        "requester": p.requester,
        "subject": p.subject,
        "key_fingerprint": p.key_fingerprint,
        "status": str(p.status),
        "created_at": p.created_at.isoformat(),
        "decided_at": _time(p.decided_at),
        "decided_by": p.decided_by,
        "ca_id": p.ca_id,
        "serial": format(p.serial, "X") if p.serial is not None else None,
    }


# ---------------------------------------------------------------------- ACME


def parse_directory(body: Mapping[str, Any]) -> acme_api.AcmeDirectory:
    """Parse ``POST /acme/directories`` (as ``privca acme directory add`` takes it)."""
    _only(body, {"name", "ca", "profiles", "allow_dns", "allow_ip", "wildcard", "eab_required"})
    directory = acme_api.AcmeDirectory(
        name=_str(body, "name", required=True) or "",
        ca=_str(body, "ca", required=True) or "",
        profiles=_strs(body, "profiles"),
        wildcard=_bool(body, "wildcard") if "wildcard" in body else True,
        eab_required=_bool(body, "eab_required") if "eab_required" in body else None,
    )
    dns = _strs(body, "allow_dns")
    if dns is not None:
        directory = replace(directory, dns_suffixes=dns)
    ranges = _networks(body, "allow_ip")
    if ranges is not None:
        directory = replace(directory, ip_ranges=ranges)
    return directory


def directory_to_wire(view: admin_api.DirectoryView) -> dict[str, Any]:
    """Return a named ACME directory as JSON."""
    d = view.directory
    return {
        "name": d.name,
        "ca": d.ca,
        "profiles": list(d.profiles) if d.profiles is not None else None,
        "allow_dns": list(d.dns_suffixes),
        "allow_ip": [str(n) for n in d.ip_ranges],
        "wildcard": d.wildcard,
        "eab_required": d.eab_required,
        "source": d.source,
        "links": {"self": links.directory_url(d.name)},
    }


def eab_key_to_wire(key: acme_api.EabKey, *, with_secret: bool = False) -> dict[str, Any]:
    """Return an EAB key as JSON; its MAC key (base64url, RFC 8555 §7.3.4) only when made."""
    out: dict[str, Any] = {
        "kid": key.kid,
        "created_at": key.created_at.isoformat(),
        "revoked": key.revoked,
        "accounts": list(key.account_ids),
    }
    if with_secret:
        out["hmac_key"] = base64.urlsafe_b64encode(key.hmac_key).rstrip(b"=").decode("ascii")
    return out


def parse_eab_revoke(body: Mapping[str, Any]) -> bool:
    """Parse ``POST /acme/eab-keys/{kid}/revoke``: ``deactivate_accounts`` (default false)."""
    _only(body, {"deactivate_accounts"})
    return _bool(body, "deactivate_accounts")


# ---------------------------------------------------------------------- Matter

# Hex digits of each Matter identifier (Matter Core §6.5.6: VID/PID 16 bits,
# fabric/node/RCAC/ICAC ids 64 bits, CASE Authenticated Tags 32 bits).
_HEX_DIGITS: Final = {
    "vid": 4,
    "pid": 4,
    "fabric_id": 16,
    "rcac_id": 16,
    "icac_id": 16,
    "node_id": 16,
}


def _hex(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} must be a hexadecimal string")
    return matter_api.parse_hex_id(value, digits=_HEX_DIGITS[key], what=key)


@dataclass(frozen=True, slots=True)
class MatterCARequest:
    """A new Matter CA: its name, identifiers (None: derived or none) and lifetime."""

    name: str
    ids: dict[str, int | None]
    days: int | None
    key_backend: str | None = None


def parse_matter_ca(body: Mapping[str, Any], *, ids: tuple[str, ...]) -> MatterCARequest:
    """Parse a PAA/PAI/RCAC/ICAC creation carrying the hex identifiers ``ids``."""
    _only(body, {"name", "days", "key_backend", *ids})
    backend = _key_backend(body)
    return MatterCARequest(
        name=_str(body, "name", required=True) or "",
        ids={key: _hex(body, key) for key in ids},
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
        key_backend=backend,
    )


@dataclass(frozen=True, slots=True)
class MatterLeafRequest:
    """A DAC or NOC from a PEM CSR (NOCSR), with identifiers to set."""

    csr: bytes
    ids: dict[str, int | None]
    cats: tuple[int, ...]
    days: int | None


def parse_matter_leaf(body: Mapping[str, Any], *, ids: tuple[str, ...]) -> MatterLeafRequest:
    """Parse ``POST /cas/{ca}/matter/dac`` or ``.../noc`` (the CSR is checked by the engine)."""
    cats_allowed = {"cats"} if "node_id" in ids else set()
    _only(body, {"csr", "days", *ids, *cats_allowed})
    csr = _str(body, "csr", required=True) or ""
    if len(csr) > _MAX_CSR or not csr.lstrip().startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        raise _bad("csr must be a PEM certificate request")
    cats = body.get("cats", [])
    if not isinstance(cats, list) or len(cats) > 3 or not all(isinstance(c, str) for c in cats):
        raise _bad("cats must be a list of at most 3 hexadecimal strings")
    return MatterLeafRequest(
        csr=csr.encode(),
        ids={key: _hex(body, key) for key in ids},
        cats=tuple(matter_api.parse_hex_id(c, digits=8, what="cat") for c in cats),
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
    )


@dataclass(frozen=True, slots=True)
class DacBatchRequest:
    """``POST /cas/{ca}/matter/dacs``: CSRs (at most ``MAX_DAC_BATCH``) for one VID/PID."""

    csrs: tuple[bytes, ...]
    vid: int
    pid: int
    days: int | None


def parse_dac_batch(body: Mapping[str, Any]) -> DacBatchRequest:
    """Parse a bulk DAC request (``privca matter dac issue --csr-dir``; CSRs checked by the
    engine, every one before any DAC is issued)."""
    _only(body, {"csrs", "vid", "pid", "days"})
    csrs = body.get("csrs")
    # How many: the engine's limit (MAX_DAC_BATCH), checked there.
    if not isinstance(csrs, list):
        raise _bad("csrs must be a list of PEM certificate requests")
    for csr in csrs:
        if (
            not isinstance(csr, str)
            or len(csr) > _MAX_CSR
            or not csr.lstrip().startswith("-----BEGIN CERTIFICATE REQUEST-----")
        ):
            raise _bad("csrs must be PEM certificate requests")
    vid, pid = _hex(body, "vid"), _hex(body, "pid")
    if vid is None or pid is None:
        raise _bad("vid and pid are required")
    return DacBatchRequest(
        csrs=tuple(c.encode() for c in csrs),
        vid=vid,
        pid=pid,
        days=_int(body, "days", low=1, high=admin_api.MAX_DAYS),
    )


def dac_batch_to_wire(
    creds: list[matter_api.DeviceCredential], pai: x509.Certificate
) -> dict[str, Any]:
    """Return issued DACs in request order, each with its serial, PEM and link, and the PAI."""
    return {
        "pai": pai.public_bytes(serialization.Encoding.PEM).decode(),
        "items": [
            {
                "serial": c.record.serial_hex,
                "subject": c.record.subject,
                "certificate": c.certificate.public_bytes(serialization.Encoding.PEM).decode(),
                "links": {"self": links.certificate_url(c.record.serial_hex, c.record.ca_id)},
            }
            for c in creds
        ],
    }


# ---------------------------------------------------------------------- audit

JSONL: Final = "application/jsonl"
_MAX_FILTER: Final = 255


def parse_audit_query(
    query: Mapping[str, str], *, since: datetime | None, until: datetime | None, limit: int
) -> AuditQuery:
    """Return the audit search of ``?actor=&action=&target=`` (times parsed by the caller)."""
    values: dict[str, str | None] = {}
    for key in ("actor", "action", "target"):
        value = query.get(key)
        if value is not None and not 0 < len(value) <= _MAX_FILTER:
            raise _bad(f"{key} must be 1-{_MAX_FILTER} characters")
        values[key] = value
    return AuditQuery(
        since=since,
        until=until,
        actor=values["actor"],
        action=values["action"],
        target=values["target"],
        limit=limit,
    )


def audit_to_wire(event: AuditEvent) -> dict[str, Any]:
    """Return one audit record as JSON."""
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": dict(event.detail),
        "source": event.source,
        "seq": event.seq,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def audit_page_to_wire(page: AuditPage) -> dict[str, Any]:
    """Return a page of audit records with the cursor of the next one (null: last page)."""
    return {
        "items": [audit_to_wire(e) for e in page.events],
        "next_cursor": encode_cursor(page.next_cursor),
    }


def audit_line(event: AuditEvent) -> bytes:
    """Return one JSON Lines record (https://jsonlines.org/) of an export."""
    return json.dumps(audit_to_wire(event), separators=(",", ":")).encode() + b"\n"
