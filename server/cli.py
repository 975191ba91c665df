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

from server import acme_cli, cli_matter
from server.bootstrap import Services, open_services
from server.ca import issuance
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
        return issuance.parse_name(value)
    except EngineError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from exc


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
    if s.status is None:
        raise EngineError(ProblemKind.UNAVAILABLE, "the revocation services are not running")
    crl = await s.status.generate_crl(a.ca, actor=str(OPERATOR))
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


# ----------------------------------------------------------------------- EST


def _est_service(s: Services) -> Any:  # an est_api.EstService (imported lazily)
    from server.app import build_est_service

    return build_est_service(s)


async def _est_label_add(s: Services, a: argparse.Namespace) -> int:
    from server.ca.est import api as est_api

    anchors = b"".join(Path(p).read_bytes() for p in a.trust_anchor or [])
    attrs = None
    if a.csrattr is not None:
        attrs = tuple(
            est_api.CsrAttr(
                oid=item.partition("=")[0].strip(),
                values=tuple(v.strip() for v in item.partition("=")[2].split(",") if v.strip()),
            )
            for item in a.csrattr
        )
    label = est_api.EstLabel(
        name=a.name,
        ca=a.ca,
        profile=a.profile,
        auth_modes=frozenset(est_api.AuthMode(m) for m in (a.auth or ["basic", "cert"])),
        trust_anchors_pem=anchors,
        approval_required=a.approval_required,
        allow_subject_change=a.allow_subject_change,
        csrattrs=attrs,
    )
    await _est_service(s).add_label(label, actor=OPERATOR)
    print(f"created EST label {a.name} (restart `privca serve` to load new TLS trust anchors)")
    return 0


async def _est_label_list(s: Services, a: argparse.Namespace) -> int:
    labels = await _est_service(s).list_labels()
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "name": lb.name,
                        "ca": lb.ca,
                        "profile": lb.profile,
                        "auth": sorted(str(m) for m in lb.auth_modes),
                        "trust_anchors": lb.trust_anchors_pem.count(b"-----BEGIN CERTIFICATE"),
                        "approval_required": lb.approval_required,
                        "allow_subject_change": lb.allow_subject_change,
                        "source": lb.source,
                    }
                    for lb in labels
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'LABEL':<20} {'CA':<12} {'PROFILE':<12} {'AUTH':<12} {'APPROVAL':<9} SOURCE")
    for lb in labels:
        modes = ",".join(sorted(str(m) for m in lb.auth_modes))
        print(
            f"{lb.name:<20} {lb.ca or '(default)':<12} {lb.profile:<12} {modes:<12} "
            f"{'yes' if lb.approval_required else 'no':<9} {lb.source}"
        )
    return 0


async def _est_label_remove(s: Services, a: argparse.Namespace) -> int:
    await _est_service(s).remove_label(a.name, actor=OPERATOR)
    print(f"removed EST label {a.name}")
    return 0


async def _est_user_add(s: Services, a: argparse.Namespace) -> int:
    await _est_service(s).add_user(a.label, a.username, a.password, actor=OPERATOR)
    print(f"EST user {a.username} can enroll on label {a.label}")
    return 0


async def _est_user_list(s: Services, a: argparse.Namespace) -> int:
    for user in await _est_service(s).list_users(a.label):
        print(f"{user.label:<20} {user.username:<32} {user.created_at:%Y-%m-%d %H:%M}")
    return 0


async def _est_user_remove(s: Services, a: argparse.Namespace) -> int:
    await _est_service(s).remove_user(a.label, a.username, actor=OPERATOR)
    print(f"removed EST user {a.username} from label {a.label}")
    return 0


async def _est_pending_list(s: Services, a: argparse.Namespace) -> int:
    from server.ca.est import api as est_api

    status = None if a.all else est_api.PendingStatus.PENDING
    print(f"{'ID':<18} {'STATUS':<9} {'LABEL':<14} {'OPERATION':<15} {'REQUESTER':<32} SUBJECT")
    for p in await _est_service(s).list_pending(status):
        print(
            f"{p.id:<18} {p.status:<9} {p.label:<14} {p.operation:<15} {p.requester:<32} "
            f"{p.subject}"
        )
    return 0


async def _est_pending_decide(s: Services, a: argparse.Namespace) -> int:
    approve = a.sub_action == "approve"
    await _est_service(s).decide(a.id, approve=approve, actor=OPERATOR)
    print(f"{'approved' if approve else 'rejected'} EST enrollment {a.id}")
    return 0


def _add_est_parser(sub: Any) -> None:
    est = sub.add_parser("est", help="EST labels, enrollment accounts and approvals")
    groups = est.add_subparsers(dest="sub", required=True)
    label = groups.add_parser("label", help="EST labels").add_subparsers(
        dest="sub_action", required=True
    )
    p = label.add_parser("add", help="add a label (/.well-known/est/NAME/)")
    _common(p)
    p.add_argument("name")
    p.add_argument("--ca", help="issuing CA (default: the default issuing CA)")
    p.add_argument("--profile", default="device", help="certificate profile (default device)")
    p.add_argument(
        "--auth", action="append", choices=["basic", "cert"], help="auth mode (default both)"
    )
    p.add_argument(
        "--trust-anchor", action="append", help="PEM file of CAs trusted for client certs"
    )
    p.add_argument("--approval-required", action="store_true", help="hold for manual approval")
    p.add_argument(
        "--allow-subject-change", action="store_true", help="reenroll may change subject/SAN"
    )
    p.add_argument("--csrattr", action="append", help="OID or OID=VALUE-OID,... for csrattrs")
    p.set_defaults(handler=_est_label_add)
    p = label.add_parser("list", help="list labels")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_est_label_list)
    p = label.add_parser("remove", help="remove a stored label and its accounts")
    _common(p)
    p.add_argument("name")
    p.set_defaults(handler=_est_label_remove)

    user = groups.add_parser("user", help="HTTP Basic enrollment accounts").add_subparsers(
        dest="sub_action", required=True
    )
    p = user.add_parser("add", help="create an account (or reset its password)")
    _common(p)
    p.add_argument("username")
    p.add_argument("--password", required=True)
    p.add_argument("--label", default="default")
    p.set_defaults(handler=_est_user_add)
    p = user.add_parser("list", help="list accounts")
    _common(p)
    p.add_argument("--label")
    p.set_defaults(handler=_est_user_list)
    p = user.add_parser("remove", help="delete an account")
    _common(p)
    p.add_argument("username")
    p.add_argument("--label", default="default")
    p.set_defaults(handler=_est_user_remove)

    pending = groups.add_parser("pending", help="enrollments awaiting approval").add_subparsers(
        dest="sub_action", required=True
    )
    p = pending.add_parser("list", help="list enrollments waiting for a decision")
    _common(p)
    p.add_argument("--all", action="store_true", help="include decided and issued ones")
    p.set_defaults(handler=_est_pending_list)
    for action in ("approve", "reject"):
        p = pending.add_parser(action, help=f"{action} a held enrollment")
        _common(p)
        p.add_argument("id")
        p.set_defaults(handler=_est_pending_decide)


def _with_est_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    update: dict[str, Any] = {}
    if args.est_client_cert_header:
        update["client_cert_header"] = args.est_client_cert_header
    if args.est_trusted_proxy:
        update["trusted_proxies"] = list(args.est_trusted_proxy)
    if not update:
        return settings
    try:
        est = type(settings.est).model_validate(settings.est.model_dump() | update)
    except ValueError as exc:
        raise ConfigError(f"invalid EST option: {exc}") from exc
    return settings.model_copy(update={"est": est})


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
    serve.add_argument(
        "--workers", type=int, help="processes serving the HTTPS and HTTP ports (default 1)"
    )
    serve.add_argument(
        "--est-client-cert-header", help="header a TLS proxy forwards client certs in"
    )
    serve.add_argument(
        "--est-trusted-proxy", action="append", help="CIDR of a proxy allowed to forward certs"
    )
    acme_cli.add_serve_flags(serve)

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
    _add_est_parser(sub)
    acme_cli.add_acme_parser(sub, _common)
    cli_matter.add_matter_parser(sub, _common)
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
            from server.app import run, run_server

            settings = _settings(
                args, host=args.host, https_port=args.https_port, http_port=args.http_port
            )
            settings = _with_est_overrides(settings, args)
            settings = acme_cli.apply_serve_flags(settings, args)
            if args.workers is not None:
                if not 1 <= args.workers <= 64:
                    raise ConfigError("--workers must be between 1 and 64")
                revocation = settings.revocation.model_copy(update={"workers": args.workers})
                settings = settings.model_copy(update={"revocation": revocation})
            run(run_server(settings))
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
