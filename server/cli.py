"""The ``privca`` command line: serve, and operator commands on the same data.

Every command opens the same data dir (or database URL) as ``serve``. Engine
errors print as ``error: ...`` with exit status 1; configuration errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.bootstrap import Services, open_services
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import (
    CAMode,
    CertQuery,
    CertStatus,
    KeyAlgorithm,
    Principal,
    RevocationReason,
)
from server.config import ConfigError, Settings, load_settings

__all__ = ["main"]

OPERATOR = Principal("operator", "cli")
Handler = Callable[[Services, argparse.Namespace], Awaitable[int]]


def _pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _write(path: str | None, text: str) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")


def _parse_san(value: str) -> x509.GeneralName:
    kind, sep, rest = value.partition(":")
    if not sep:
        # Bare values: an IP address or a DNS name.
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            return x509.DNSName(value)
    kinds: dict[str, Callable[[str], x509.GeneralName]] = {
        "dns": x509.DNSName,
        "ip": lambda v: x509.IPAddress(ipaddress.ip_address(v)),
        "uri": x509.UniformResourceIdentifier,
        "email": x509.RFC822Name,
    }
    if kind not in kinds:
        raise argparse.ArgumentTypeError(f"SAN kind must be dns, ip, uri or email: {value!r}")
    try:
        return kinds[kind](rest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad SAN {value!r}: {exc}") from exc


def _parse_subject(value: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad subject {value!r}: {exc}") from exc


def _lifetime(args: argparse.Namespace) -> timedelta | None:
    if getattr(args, "days", None):
        return timedelta(days=args.days)
    if getattr(args, "hours", None):
        return timedelta(hours=args.hours)
    return None


def _name_constraints(args: argparse.Namespace) -> x509.NameConstraints | None:
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in args.permit_dns or []]
    permitted += [x509.IPAddress(ipaddress.ip_network(n)) for n in args.permit_ip or []]
    return (
        x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)
        if permitted
        else None
    )


# ----------------------------------------------------------------------- handlers


async def _ca_create_root(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.create_root(
        a.name,
        actor=OPERATOR,
        key_algorithm=a.key_type,
        lifetime=_lifetime(a),
        path_length=a.path_len,
        mode=a.mode,
        name_constraints=_name_constraints(a),
        subject=a.subject,
    )
    print(f"created root CA {ca.name} (id {ca.id}, {ca.key_algorithm})")
    return 0


async def _ca_create_sub(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.create_subordinate(
        a.name,
        parent=a.parent,
        actor=OPERATOR,
        key_algorithm=a.key_type,
        lifetime=_lifetime(a),
        path_length=a.path_len,
        mode=a.mode,
        name_constraints=_name_constraints(a),
        subject=a.subject,
        dns_suffixes=a.allow_dns_suffix or (),
        ip_networks=a.allow_ip or (),
        publish_revocation=True if a.publish_revocation else None,
    )
    print(f"created CA {ca.name} (id {ca.id}, tier {ca.tier}, parent {a.parent})")
    return 0


async def _ca_import_csr(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.create_import_request(
        a.name, actor=OPERATOR, key_algorithm=a.key_type, subject=a.subject, mode=a.mode
    )
    csr = x509.load_der_x509_csr(ca.csr_der or b"")
    _write(a.out, csr.public_bytes(serialization.Encoding.PEM).decode())
    if a.out:
        print(f"CA {ca.name} is pending; have {a.out} signed, then run `privca ca import-activate`")
    return 0


async def _ca_import_activate(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.activate_import(a.name, pem=Path(a.cert).read_bytes(), actor=OPERATOR)
    print(f"activated CA {ca.name} (tier {ca.tier})")
    return 0


async def _ca_list(s: Services, a: argparse.Namespace) -> int:
    cas = await s.engine.list_cas()
    if a.json:
        print(json.dumps([_ca_json(c) for c in cas], indent=2))
        return 0
    print(f"{'NAME':<20} {'ID':<14} {'TIER':>4} {'STATUS':<8} {'MODE':<12} {'KEY':<10} PARENT")
    by_id = {c.id: c.name for c in cas}
    for c in cas:
        parent = by_id.get(c.parent_id, "-") if c.parent_id else ("external" if c.external else "-")
        print(
            f"{c.name:<20} {c.id:<14} {c.tier:>4} {c.status:<8} {c.mode:<12} "
            f"{c.key_algorithm:<10} {parent}"
        )
    return 0


def _ca_json(c: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "id": c.id,
        "tier": c.tier,
        "status": str(c.status),
        "mode": str(c.mode),
        "kind": str(c.kind),
        "key_algorithm": str(c.key_algorithm),
        "parent_id": c.parent_id,
        "external": c.external,
    }
    if c.cert_der:
        cert = c.certificate
        out |= {
            "subject": cert.subject.rfc4514_string(),
            "serial": format(cert.serial_number, "X"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
    return out


async def _ca_show(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    print(json.dumps(_ca_json(ca), indent=2))
    return 0


async def _ca_export(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    if ca.cert_der is None:
        csr = x509.load_der_x509_csr(ca.csr_der or b"")
        _write(a.out, csr.public_bytes(serialization.Encoding.PEM).decode())
        return 0
    chain = await s.engine.chain_of(ca)
    _write(a.out, _pem(chain if a.chain else chain[:1]))
    return 0


async def _cert_issue(s: Services, a: argparse.Namespace) -> int:
    if a.csr:
        issued = await s.engine.issue(
            Path(a.csr).read_bytes(),
            principal=OPERATOR,
            profile=a.profile,
            ca=a.ca,
            lifetime=_lifetime(a),
        )
    else:
        if a.subject is None and not a.san:
            raise EngineError(
                ProblemKind.MALFORMED, "give --csr, or --subject/--san to generate a key"
            )
        issued = await s.engine.issue_with_generated_key(
            principal=OPERATOR,
            profile=a.profile,
            key_algorithm=a.key_type,
            subject=a.subject or x509.Name([]),
            names=a.san or [],
            ca=a.ca,
            lifetime=_lifetime(a),
        )
        if a.key_out:
            Path(a.key_out).touch(mode=0o600)
            Path(a.key_out).write_bytes(issued.private_key_pem or b"")
    # Leaf first, then the chain without the root (the trust anchor).
    _write(a.out, _pem([issued.certificate, *issued.chain[:-1]]))
    if a.out:
        print(f"issued {issued.record.serial_hex} to {a.out}")
    return 0


def _cert_row(r: Any, now: datetime) -> str:
    status = str(r.status)
    if r.status is CertStatus.VALID and r.not_after <= now:
        status = "expired"
    return (
        f"{r.serial_hex:<34} {status:<8} {r.not_after:%Y-%m-%d %H:%M} {r.profile:<12} "
        f"{r.subject or ','.join(r.sans)}"
    )


async def _cert_list(s: Services, a: argparse.Namespace) -> int:
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
        print(_cert_row(r, now))
    return 0


async def _cert_show(s: Services, a: argparse.Namespace) -> int:
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


async def _cert_revoke(s: Services, a: argparse.Namespace) -> int:
    rec = await s.engine.revoke(int(a.serial, 16), principal=OPERATOR, reason=a.reason, ca=a.ca)
    print(f"revoked {rec.serial_hex} ({a.reason})")
    return 0


async def _crl_generate(s: Services, a: argparse.Namespace) -> int:
    crl = await s.engine.generate_crl(a.ca, actor=OPERATOR)
    if a.out:
        Path(a.out).write_bytes(crl.der)
        print(f"CRL number {crl.number} written to {a.out}")
    else:
        print(f"CRL number {crl.number} generated (next update {crl.next_update.isoformat()})")
    return 0


async def _audit(s: Services, a: argparse.Namespace) -> int:
    for e in reversed(await s.engine.audit_log(limit=a.limit)):
        detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
        print(
            f"{e.at:%Y-%m-%dT%H:%M:%SZ} {e.actor:<24} {e.action:<18} {e.target} {detail}".rstrip()
        )
    return 0


# ----------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--database-url", help="e.g. postgresql+asyncpg://user@host/db")


def _ca_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-type",
        type=KeyAlgorithm,
        default=KeyAlgorithm.EC_P256,
        choices=list(KeyAlgorithm),
        help="key algorithm (default ec-p256)",
    )
    p.add_argument("--subject", type=_parse_subject, help="subject DN (default CN=NAME,O=privca)")
    p.add_argument("--days", type=int, help="lifetime in days")
    p.add_argument("--path-len", type=int, help="pathLenConstraint (default from the tier)")
    p.add_argument("--mode", type=CAMode, default=CAMode.GENERAL, choices=list(CAMode))
    p.add_argument("--permit-dns", action="append", help="name constraint: permitted DNS subtree")
    p.add_argument("--permit-ip", action="append", help="name constraint: permitted IP network")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every privca command."""
    parser = argparse.ArgumentParser(prog="privca", description="privca private CA")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTPS (ACME, EST) and HTTP (OCSP, CRL) server")
    _common(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--https-port", type=int, help="HTTPS port (default 8443)")
    serve.add_argument("--http-port", type=int, help="plain HTTP port (default 8080)")

    ca = sub.add_parser("ca", help="certificate authorities").add_subparsers(
        dest="sub", required=True
    )
    p = ca.add_parser("create-root", help="create a self-signed root CA")
    _common(p)
    p.add_argument("name")
    _ca_options(p)
    p.set_defaults(handler=_ca_create_root, create=True)
    p = ca.add_parser("create-sub", help="create a subordinate CA (tiers 2-5)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--parent", required=True, help="name of the signing CA")
    _ca_options(p)
    p.add_argument("--allow-dns-suffix", action="append", help="identifier policy: DNS suffix")
    p.add_argument("--allow-ip", action="append", help="identifier policy: IP network")
    p.add_argument(
        "--publish-revocation",
        action="store_true",
        help="short-lived mode: still put CDP/OCSP URLs in leaves",
    )
    p.set_defaults(handler=_ca_create_sub)
    p = ca.add_parser("import-csr", help="create a CA key and CSR for an external signer")
    _common(p)
    p.add_argument("name")
    p.add_argument(
        "--key-type", type=KeyAlgorithm, default=KeyAlgorithm.EC_P256, choices=list(KeyAlgorithm)
    )
    p.add_argument("--subject", type=_parse_subject)
    p.add_argument("--mode", type=CAMode, default=CAMode.GENERAL, choices=list(CAMode))
    p.add_argument("--out", help="write the CSR here (default stdout)")
    p.set_defaults(handler=_ca_import_csr, create=True)
    p = ca.add_parser("import-activate", help="activate an imported CA with its signed certificate")
    _common(p)
    p.add_argument("name")
    p.add_argument(
        "--cert", required=True, help="PEM: the CA certificate, then its chain to the root"
    )
    p.set_defaults(handler=_ca_import_activate)
    p = ca.add_parser("list", help="list CAs")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_ca_list)
    p = ca.add_parser("show", help="show one CA")
    _common(p)
    p.add_argument("name")
    p.set_defaults(handler=_ca_show)
    p = ca.add_parser("export", help="print a CA certificate (PEM)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--chain", action="store_true", help="include the issuers up to the root")
    p.add_argument("--out")
    p.set_defaults(handler=_ca_export)

    cert = sub.add_parser("cert", help="certificates").add_subparsers(dest="sub", required=True)
    p = cert.add_parser("issue", help="issue a certificate from a CSR or with a generated key")
    _common(p)
    p.add_argument("--csr", help="PKCS#10 request (PEM or DER)")
    p.add_argument(
        "--profile", default="tls-server", help="tls-server, tls-client, device, short-lived"
    )
    p.add_argument("--ca", help="issuing CA (default: the issuing CA made on first start)")
    p.add_argument("--out", help="write leaf + chain (without root) here (default stdout)")
    p.add_argument("--days", type=int)
    p.add_argument("--hours", type=int)
    p.add_argument("--subject", type=_parse_subject, help="with a generated key: subject DN")
    p.add_argument(
        "--san", type=_parse_san, action="append", help="with a generated key: dns:x, ip:x ..."
    )
    p.add_argument(
        "--key-type", type=KeyAlgorithm, default=KeyAlgorithm.EC_P256, choices=list(KeyAlgorithm)
    )
    p.add_argument("--key-out", help="with a generated key: write the private key here")
    p.set_defaults(handler=_cert_issue)
    p = cert.add_parser("list", help="search the inventory")
    _common(p)
    p.add_argument("--ca")
    p.add_argument("--status", type=CertStatus, choices=list(CertStatus))
    p.add_argument("--search", help="substring of subject or SAN")
    p.add_argument("--expiring-days", type=int, help="only those expiring within N days")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=_cert_list)
    p = cert.add_parser("show", help="show one certificate")
    _common(p)
    p.add_argument("serial", help="serial number in hex")
    p.add_argument("--ca")
    p.add_argument("--pem", action="store_true")
    p.set_defaults(handler=_cert_show)
    p = cert.add_parser("revoke", help="revoke a certificate")
    _common(p)
    p.add_argument("serial", help="serial number in hex")
    p.add_argument(
        "--reason",
        type=RevocationReason,
        default=RevocationReason.UNSPECIFIED,
        choices=list(RevocationReason),
    )
    p.add_argument("--ca")
    p.set_defaults(handler=_cert_revoke)

    crl = sub.add_parser("crl", help="certificate revocation lists").add_subparsers(
        dest="sub", required=True
    )
    p = crl.add_parser("generate", help="generate a CRL now")
    _common(p)
    p.add_argument("--ca")
    p.add_argument("--out", help="write the DER CRL here")
    p.set_defaults(handler=_crl_generate)

    p = sub.add_parser("audit", help="show the audit log")
    _common(p)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=_audit)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(
        args.config, data_dir=args.data_dir, database_url=args.database_url, **extra
    )


async def _run(handler: Handler, settings: Settings, args: argparse.Namespace) -> int:
    async with open_services(settings, create=getattr(args, "create", False)) as services:
        return await handler(services, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``privca`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            from server.app import run_server

            settings = _settings(
                args, host=args.host, https_port=args.https_port, http_port=args.http_port
            )
            asyncio.run(run_server(settings))
            return 0
        return asyncio.run(_run(args.handler, _settings(args), args))
    except ConfigError as exc:
        print(f"privca: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
