"""``privca ca ...``: create, import, list, show, export, disable, enable, revoke, renew CAs.

Offline CAs: ``set-offline``/``set-online`` and the ceremony ``sign-offline``, the one
command (with ``create-sub``/``renew`` under an offline CA) that lets the engine load an
offline CA's key; ``serve`` never does. A software key leaves the database when its CA
goes offline (``--key-out FILE``, see ``server.ca.custody``); ceremonies take it back
for their process only (``--key FILE``), ``set-online --key FILE`` for good.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import lifecycle
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA, CAMode, RevocationReason
from server.cli import ceremony
from server.cli.options import (
    CA_OPTIONS,
    KEY_BACKEND,
    KEY_TYPE,
    OPERATOR,
    STORAGE,
    Subparsers,
    lifetime,
    name_constraints,
    parse_subject,
    pem,
    write,
)
from server.wiring import Services

__all__ = ["register"]


async def _create_root(s: Services, a: argparse.Namespace) -> int:
    out = ceremony.check_new_offline_root(a)
    ca = await s.engine.create_root(
        a.name,
        actor=OPERATOR,
        key_algorithm=a.key_type,
        lifetime=lifetime(a),
        path_length=a.path_len,
        mode=a.mode,
        name_constraints=name_constraints(a),
        subject=a.subject,
        key_backend=a.key_backend,
    )
    print(f"created root CA {ca.name} (id {ca.id}, {ca.key_algorithm})")
    if a.offline:
        await ceremony.carry_out(s, ca, out)
        ceremony.say_offline(ca.name, out, "after creating its sub-CAs")
    return 0


async def _set_offline(s: Services, a: argparse.Namespace) -> int:
    out = ceremony.check_key_out(a, offline=True)
    ca = await ceremony.carry_out(s, await s.engine.get_ca(a.name), out)
    ceremony.say_offline(ca.name, out, "where the key is")
    return 0


async def _set_online(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    key = await s.engine.bring_back_key(ca, Path(a.key).read_bytes()) if a.key else None
    ca = await s.engine.set_ca_offline(a.name, offline=False, actor=OPERATOR, key=key)
    print(f"CA {ca.name} is online: serving processes sign its CRL and OCSP answers")
    if key is not None:
        print(f"its key is back in the database; {a.key} may be destroyed")
    return 0


async def _sign_offline(s: Services, a: argparse.Namespace) -> int:
    if s.status is None:
        raise EngineError(ProblemKind.UNAVAILABLE, "the revocation services are not running")
    await ceremony.begin(s, a.name, a.key)
    s.engine.begin_ceremony()
    done = await s.status.sign_offline(
        a.name,
        days=a.days,
        ocsp_signer=a.ocsp_signer,
        actor=str(OPERATOR),
        source=OPERATOR.source,
    )
    print(
        f"offline CA {done.ca.name}: CRL {done.crl.number} and {done.answers} OCSP answer(s) "
        f"valid until {done.crl.next_update:%Y-%m-%d %H:%M}Z"
    )
    if done.signer is not None:
        print(
            f"delegated OCSP signer {done.signer.serial:X} valid until "
            f"{done.signer.not_after:%Y-%m-%d %H:%M}Z (serving processes answer with it)"
        )
    return 0


async def _offline_json(s: Services, c: CA) -> dict[str, Any]:
    """Return when an offline CA's signed status lapses and its next ceremony is due."""
    if not c.offline or s.status is None or c.cert_der is None:
        return {}
    until = await s.status.offline.valid_until(c)
    due = until - s.status.offline.warn_before
    return {
        "status_valid_until": until.isoformat(timespec="seconds"),
        "ceremony_due": due.isoformat(timespec="seconds"),
    }


async def _create_sub(s: Services, a: argparse.Namespace) -> int:
    await ceremony.begin(s, a.parent, a.key)
    ca = await s.engine.create_subordinate(
        a.name,
        parent=a.parent,
        actor=OPERATOR,
        key_algorithm=a.key_type,
        lifetime=lifetime(a),
        path_length=a.path_len,
        mode=a.mode,
        name_constraints=name_constraints(a),
        subject=a.subject,
        dns_suffixes=a.allow_dns_suffix or (),
        ip_networks=a.allow_ip or (),
        publish_revocation=True if a.publish_revocation else None,
        key_backend=a.key_backend,
    )
    print(f"created CA {ca.name} (id {ca.id}, tier {ca.tier}, parent {a.parent})")
    return 0


async def _import_csr(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.create_import_request(
        a.name,
        actor=OPERATOR,
        key_algorithm=a.key_type,
        subject=a.subject,
        mode=a.mode,
        key_backend=a.key_backend,
    )
    csr = x509.load_der_x509_csr(ca.csr_der or b"")
    write(a.out, csr.public_bytes(serialization.Encoding.PEM).decode())
    if a.out:
        print(f"CA {ca.name} is pending; have {a.out} signed, then run `privca ca import-activate`")
    return 0


async def _import_activate(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.activate_import(a.name, pem=Path(a.cert).read_bytes(), actor=OPERATOR)
    print(f"activated CA {ca.name} (tier {ca.tier})")
    return 0


async def _list(s: Services, a: argparse.Namespace) -> int:
    cas = await s.engine.list_cas()
    now = s.engine.now()
    offline = {c.id: await _offline_json(s, c) for c in cas}
    if a.json:
        print(json.dumps([_ca_json(c, now) | offline[c.id] for c in cas], indent=2))
        return 0
    print(
        f"{'NAME':<20} {'ID':<14} {'TIER':>4} {'STATE':<14} {'MODE':<12} {'KEY':<10} "
        f"{'PARENT':<20} CEREMONY DUE"
    )
    by_id = {c.id: c.name for c in cas}
    for c in cas:
        parent = by_id.get(c.parent_id, "-") if c.parent_id else ("external" if c.external else "-")
        due = offline[c.id].get("ceremony_due", "offline" if c.offline else "-")
        print(
            f"{c.name:<20} {c.id:<14} {c.tier:>4} {lifecycle.state_of(c, now):<14} {c.mode:<12} "
            f"{c.key_algorithm:<10} {parent:<20} {due}"
        )
    return 0


def _ca_json(c: CA, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "id": c.id,
        "tier": c.tier,
        "status": str(c.status),
        "state": lifecycle.state_of(c, now),
        "mode": str(c.mode),
        "kind": str(c.kind),
        "key_algorithm": str(c.key_algorithm),
        "parent_id": c.parent_id,
        "external": c.external,
        "offline": c.offline,
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


async def _show(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    print(json.dumps(_ca_json(ca, s.engine.now()) | await _offline_json(s, ca), indent=2))
    return 0


async def _export(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    if ca.cert_der is None:
        csr = x509.load_der_x509_csr(ca.csr_der or b"")
        write(a.out, csr.public_bytes(serialization.Encoding.PEM).decode())
        return 0
    chain = await s.engine.chain_of(ca)
    write(a.out, pem(chain if a.chain else chain[:1]))
    return 0


async def _disable(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.disable_ca(a.name, actor=OPERATOR)
    print(f"disabled CA {ca.name}: it issues nothing; its CRL and OCSP stay published")
    return 0


async def _enable(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.enable_ca(a.name, actor=OPERATOR)
    print(f"enabled CA {ca.name}")
    return 0


async def _revoke(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.revoke_ca(a.name, reason=a.reason, actor=OPERATOR)
    where = "at its parent" if ca.parent_id else "(a root: no CRL can list it; untrust it)"
    print(f"revoked CA {ca.name} {where} ({a.reason}); every CA under it is revoked too")
    return 0


async def _renew(s: Services, a: argparse.Namespace) -> int:
    ca = await s.engine.get_ca(a.name)
    # A root signs its own renewal; a sub-CA's parent signs it.
    signer = ca if ca.parent_id is None else await s.engine.get_ca(ca.parent_id)
    if ca.offline:
        s.engine.begin_ceremony()
    await ceremony.begin(s, signer.name, a.key)
    renewal = await s.engine.renew_ca(a.name, actor=OPERATOR, rekey=a.rekey, days=a.days)
    cert = renewal.certificate
    print(
        f"renewed CA {renewal.ca.name}: serial {cert.serial_number:X}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
        + (", new key" if renewal.rekeyed else ", same key")
    )
    if renewal.orphaned_leaves:
        print(
            f"warning: {renewal.orphaned_leaves} unexpired certificates were signed by the old "
            "key; their OCSP/CRL status is no longer published",
            file=sys.stderr,
        )
    await _refresh_bundle(s)
    return 0


async def _refresh_bundle(s: Services) -> None:
    """Rewrite ca-bundle.pem when it exists, so it holds the current root certificate."""
    bundle = s.settings.data_dir / "ca-bundle.pem"
    issuing = await s.engine.find_ca(s.settings.ca.issuing_name)
    if bundle.exists() and issuing is not None and issuing.cert_der is not None:
        chain = await s.engine.chain_of(issuing)
        bundle.write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))


_RENEW_HELP = """\
A new CA certificate from the parent (self-signed for a root): same subject, path
length and name constraints, same key unless --rekey. Chains, EST cacerts, ACME
chains and ca-bundle.pem publish the new certificate; CAs below get the new chain.
Same key: everything issued before still chains and keeps its OCSP/CRL status.
--rekey is refused while the CA has unexpired, unrevoked child CAs; leaves signed
by the old key stay valid but their OCSP/CRL status is no longer published (the
count is printed and audited): revoke or replace them first."""


_SIGN_OFFLINE_HELP = """\
Run where the offline CA's key is, on the database serve uses. Stores the CA's
CRL and a pre-signed OCSP answer for every certificate it issued (its sub-CAs),
each valid for --days; serve serves them until they expire and warns
[ca] offline_warn_days before. Without --ocsp-signer, OCSP requests for serials
with no stored answer (unknown serials) get "unauthorized", and a revocation
under the CA is published at the next ceremony. With --ocsp-signer, serve signs
those answers with the delegated signer's key (never the CA's). A CA whose key
was moved out with --key-out needs --key FILE (that file); a token CA needs the
[pkcs11] token."""


def register(sub: Subparsers) -> None:
    """Add ``privca ca ...`` to the top-level subparsers."""
    ca = sub.add_parser("ca", help="certificate authorities").add_subparsers(
        dest="sub", required=True
    )
    p = ca.add_parser(
        "create-root", help="create a self-signed root CA", parents=[STORAGE, CA_OPTIONS]
    )
    p.add_argument("name")
    p.add_argument(
        "--offline",
        action="store_true",
        help="serving processes never load its key; `sign-offline` signs its status",
    )
    p.add_argument(
        "--key-out",
        metavar="FILE",
        help="offline: move the CA's software key to FILE (new, mode 0600) and out of the "
        "database; required for pkcs8 keys",
    )
    p.set_defaults(handler=_create_root, create=True)
    p = ca.add_parser(
        "create-sub", help="create a subordinate CA (tiers 2-5)", parents=[STORAGE, CA_OPTIONS]
    )
    p.add_argument("name")
    p.add_argument("--parent", required=True, help="name of the signing CA")
    p.add_argument("--allow-dns-suffix", action="append", help="identifier policy: DNS suffix")
    p.add_argument("--allow-ip", action="append", help="identifier policy: IP network")
    p.add_argument(
        "--publish-revocation",
        action="store_true",
        help="short-lived mode: still put CDP/OCSP URLs in leaves",
    )
    p.add_argument(
        "--key",
        metavar="FILE",
        help="the offline parent's key file (its --key-out), when carried",
    )
    p.set_defaults(handler=_create_sub)
    p = ca.add_parser(
        "import-csr",
        help="create a CA key and CSR for an external signer",
        parents=[STORAGE, KEY_TYPE, KEY_BACKEND],
    )
    p.add_argument("name")
    p.add_argument("--subject", type=parse_subject)
    p.add_argument("--mode", type=CAMode, default=CAMode.GENERAL, choices=list(CAMode))
    p.add_argument("--out", help="write the CSR here (default stdout)")
    p.set_defaults(handler=_import_csr, create=True)
    p = ca.add_parser(
        "import-activate",
        help="activate an imported CA with its signed certificate",
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.add_argument(
        "--cert", required=True, help="PEM: the CA certificate, then its chain to the root"
    )
    p.set_defaults(handler=_import_activate)
    p = ca.add_parser("list", help="list CAs", parents=[STORAGE])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_list)
    p = ca.add_parser("show", help="show one CA", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_show)
    p = ca.add_parser("export", help="print a CA certificate (PEM)", parents=[STORAGE])
    p.add_argument("name")
    p.add_argument("--chain", action="store_true", help="include the issuers up to the root")
    p.add_argument("--out")
    p.set_defaults(handler=_export)
    p = ca.add_parser(
        "disable",
        help="stop a CA issuing; CRL, OCSP and revocations keep working",
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.set_defaults(handler=_disable)
    p = ca.add_parser("enable", help="let a disabled CA issue again", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_enable)
    p = ca.add_parser(
        "revoke",
        help="revoke a CA's certificate at its parent; it and every CA under it stop issuing",
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.add_argument("--reason", required=True, type=RevocationReason, choices=list(RevocationReason))
    p.set_defaults(handler=_revoke)
    p = ca.add_parser(
        "renew",
        help="issue a CA a new certificate (same key unless --rekey)",
        description=_RENEW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.add_argument(
        "--rekey",
        action="store_true",
        help="new key pair; refused while child CAs are live; old-key leaves lose OCSP/CRL",
    )
    p.add_argument(
        "--days", type=int, help="lifetime (default: the configured root/sub CA lifetime)"
    )
    p.add_argument(
        "--key",
        metavar="FILE",
        help="the signing offline CA's key file (its --key-out), when carried",
    )
    p.set_defaults(handler=_renew)
    p = ca.add_parser(
        "set-offline",
        help="serving processes stop loading this CA's key; its status comes from ceremonies",
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.add_argument(
        "--key-out",
        metavar="FILE",
        help="offline: move the CA's software key to FILE (new, mode 0600) and out of the "
        "database; required for pkcs8 keys",
    )
    p.set_defaults(handler=_set_offline)
    p = ca.add_parser(
        "set-online", help="serving processes sign this CA's status again", parents=[STORAGE]
    )
    p.add_argument("name")
    p.add_argument(
        "--key",
        metavar="FILE",
        help="the key file --key-out wrote: the key goes back into the database",
    )
    p.set_defaults(handler=_set_online)
    p = ca.add_parser(
        "sign-offline",
        help="ceremony: sign an offline CA's CRL and OCSP answers for N days (where its key is)",
        description=_SIGN_OFFLINE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[STORAGE],
    )
    p.add_argument("name")
    p.add_argument("--days", type=int, required=True, help="validity of what is signed")
    p.add_argument(
        "--ocsp-signer",
        action="store_true",
        help="also issue a delegated OCSP signer (valid --days) that serve answers with",
    )
    p.add_argument(
        "--key",
        metavar="FILE",
        help="the CA's key file (its --key-out), when its key is carried",
    )
    p.set_defaults(handler=_sign_offline)
