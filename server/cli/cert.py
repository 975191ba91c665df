"""``privca cert ...``: issue, search, show and revoke certificates."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server import private_files
from server.ca import lifecycle
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CertificateRecord, CertQuery, CertStatus, RevocationReason
from server.cli.options import (
    KEY_TYPE,
    OPERATOR,
    STORAGE,
    Subparsers,
    lifetime,
    parse_san,
    parse_subject,
    pem,
    write,
)
from server.wiring import Services

__all__ = ["register"]


async def _issue(s: Services, a: argparse.Namespace) -> int:
    if a.csr:
        issued = await s.engine.issue(
            Path(a.csr).read_bytes(),
            principal=OPERATOR,
            grant=s.settings.operator.to_grant(),
            profile=a.profile,
            ca=a.ca,
            lifetime=lifetime(a),
        )
    else:
        if a.subject is None and not a.san:
            raise EngineError(
                ProblemKind.MALFORMED, "give --csr, or --subject/--san to generate a key"
            )
        issued = await s.engine.issue_with_generated_key(
            principal=OPERATOR,
            grant=s.settings.operator.to_grant(),
            profile=a.profile,
            key_algorithm=a.key_type,
            subject=a.subject or x509.Name([]),
            names=a.san or [],
            ca=a.ca,
            lifetime=lifetime(a),
        )
        if a.key_out:
            # A new 0600 file renamed over the path: an existing file's wider mode never stays.
            private_files.write_private(Path(a.key_out), issued.private_key_pem or b"")
    # Leaf first, then the chain without the root (the trust anchor).
    write(a.out, pem([issued.certificate, *issued.chain[:-1]]))
    if a.out:
        print(f"issued {issued.record.serial_hex} to {a.out}")
    return 0


def _row(r: CertificateRecord, now: datetime) -> str:
    status = str(r.status)
    if r.status is CertStatus.VALID and r.not_after <= now:
        status = "expired"
    return (
        f"{r.serial_hex:<34} {status:<8} {r.not_after:%Y-%m-%d %H:%M} {r.profile:<12} "
        f"{r.subject or ','.join(r.sans)}"
    )


async def _list(s: Services, a: argparse.Namespace) -> int:
    ca_id = (await s.engine.get_ca(a.ca)).id if a.ca else None
    now = datetime.now(UTC)
    query = CertQuery(
        ca_id=ca_id,
        status=a.status,
        text=a.search,
        expires_before=now + timedelta(days=a.expiring_days) if a.expiring_days else None,
        expires_after=now if a.expiring_days else None,
        limit=a.limit,
    )
    rows = await s.engine.find_certificates(query)
    print(f"{'SERIAL':<34} {'STATUS':<8} {'NOT AFTER':<16} {'PROFILE':<12} SUBJECT/SANS")
    for r in rows:
        print(_row(r, now))
    return 0


async def _show(s: Services, a: argparse.Namespace) -> int:
    rec = await s.engine.get_certificate(a.ca, int(a.serial, 16))
    cert = x509.load_der_x509_certificate(rec.der)
    info = {
        "serial": rec.serial_hex,
        "ca_id": rec.ca_id,
        "status": str(rec.status),
        "subject": rec.subject,
        "sans": list(rec.sans),
        "profile": rec.profile,
        "not_before": rec.not_before.isoformat(),
        "not_after": rec.not_after.isoformat(),
        "revoked_at": rec.revoked_at.isoformat() if rec.revoked_at else None,
        "reason": str(rec.revocation_reason) if rec.revocation_reason else None,
        "requester": rec.requester,
    }
    print(json.dumps(info, indent=2))
    if a.pem:
        print(cert.public_bytes(serialization.Encoding.PEM).decode(), end="")
    return 0


async def _revoke(s: Services, a: argparse.Namespace) -> int:
    found = await s.engine.get_certificate(a.ca, int(a.serial, 16))
    _, holder = await lifecycle.revoke_certificate(s.engine, found, reason=a.reason, actor=OPERATOR)
    if holder is not None:
        print(f"revoked {found.serial_hex} ({a.reason}): CA {holder.name} is revoked")
    else:
        print(f"revoked {found.serial_hex} ({a.reason})")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca cert ...`` to the top-level subparsers."""
    cert = sub.add_parser("cert", help="certificates").add_subparsers(dest="sub", required=True)
    p = cert.add_parser(
        "issue",
        help="issue a certificate from a CSR or with a generated key",
        parents=[STORAGE, KEY_TYPE],
    )
    p.add_argument("--csr", help="PKCS#10 request (PEM or DER)")
    p.add_argument(
        "--profile", default="tls-server", help="tls-server, tls-client, device, short-lived"
    )
    p.add_argument("--ca", help="issuing CA (default: the issuing CA made on first start)")
    p.add_argument("--out", help="write leaf + chain (without root) here (default stdout)")
    p.add_argument("--days", type=int)
    p.add_argument("--hours", type=int)
    p.add_argument("--subject", type=parse_subject, help="with a generated key: subject DN")
    p.add_argument(
        "--san", type=parse_san, action="append", help="with a generated key: dns:x, ip:x ..."
    )
    p.add_argument("--key-out", help="with a generated key: write the private key here")
    p.set_defaults(handler=_issue)
    p = cert.add_parser("list", help="search the inventory", parents=[STORAGE])
    p.add_argument("--ca")
    p.add_argument("--status", type=CertStatus, choices=list(CertStatus))
    p.add_argument("--search", help="substring of subject or SAN")
    p.add_argument("--expiring-days", type=int, help="only those expiring within N days")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=_list)
    p = cert.add_parser("show", help="show one certificate", parents=[STORAGE])
    p.add_argument("serial", help="serial number in hex")
    p.add_argument("--ca")
    p.add_argument("--pem", action="store_true")
    p.set_defaults(handler=_show)
    p = cert.add_parser("revoke", help="revoke a certificate", parents=[STORAGE])
    p.add_argument("serial", help="serial number in hex")
    p.add_argument(
        "--reason",
        type=RevocationReason,
        default=RevocationReason.UNSPECIFIED,
        choices=list(RevocationReason),
    )
    p.add_argument("--ca")
    p.set_defaults(handler=_revoke)
