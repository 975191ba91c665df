"""``privca admin ...``: admin API identities (bearer tokens and admin client certificates).

Bootstrap and break-glass: these commands work on the database directly, so the
first owner token comes from a shell on the database host. A token is printed
once and stored only as its SHA-256; a certificate's key is written 0600 into a
0700 directory and kept nowhere else.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from server import private_files, wiring
from server.ca.admin import api as admin_api
from server.cli.options import OPERATOR, STORAGE, Subparsers
from server.wiring import Services

__all__ = ["register"]


def _service(s: Services) -> admin_api.AdminService:
    return wiring.build_admin_service(s)


async def _token_create(s: Services, a: argparse.Namespace) -> int:
    token, secret = await _service(s).create_token(
        a.name, role=a.role, scope=a.scope, lifetime=timedelta(days=a.days), actor=OPERATOR
    )
    scope = token.scope or "every CA"
    print(f"admin token {token.name}: role {token.role}, scope {scope}, ", end="")
    print(f"expires {token.expires_at:%Y-%m-%d %H:%M}Z (shown once; only its hash is stored)")
    print(secret)
    return 0


async def _token_list(s: Services, a: argparse.Namespace) -> int:
    tokens = await _service(s).list_tokens()
    now = s.engine.now()
    if a.json:
        print(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "role": str(t.role),
                        "scope": t.scope,
                        "created_at": t.created_at.isoformat(),
                        "expires_at": t.expires_at.isoformat(),
                        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    }
                    for t in tokens
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'NAME':<24} {'ROLE':<9} {'SCOPE':<20} {'STATE':<8} {'EXPIRES':<17} LAST USED")
    for t in tokens:
        state = "revoked" if t.revoked_at else "expired" if t.expires_at <= now else "live"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-"
        print(
            f"{t.name:<24} {t.role:<9} {t.scope or '*':<20} {state:<8} "
            f"{t.expires_at:%Y-%m-%d %H:%M} {used}"
        )
    return 0


async def _token_revoke(s: Services, a: argparse.Namespace) -> int:
    await _service(s).revoke_token(a.name, actor=OPERATOR)
    print(f"admin token {a.name} revoked")
    return 0


async def _cert_create(s: Services, a: argparse.Namespace) -> int:
    service = _service(s)
    # `serve` makes the admin CA on first start; bootstrap before it makes it here.
    await service.ensure_admin_ca(actor=OPERATOR, key_algorithm=s.settings.ca.key_algorithm)
    issued = await service.create_certificate(
        a.name, role=a.role, scope=a.scope, lifetime=timedelta(days=a.days), actor=OPERATOR
    )
    out = Path(a.out)
    private_files.ensure_private_dir(out)
    key = out / f"{a.name}.key"
    cert = out / f"{a.name}.pem"
    ca = out / "admin-ca.pem"
    private_files.write_private(key, issued.private_key_pem or b"")
    pem = issued.certificate.public_bytes(serialization.Encoding.PEM)
    private_files.write_private(cert, pem, mode=0o644)
    ca_pem = issued.chain[-1].public_bytes(serialization.Encoding.PEM)
    private_files.write_private(ca, ca_pem, mode=0o644)
    print(
        f"admin certificate {issued.record.serial_hex} for {a.name} (role {a.role}, "
        f"scope {a.scope or 'every CA'}): {cert}, key {key} (0600), admin CA {ca}"
    )
    return 0


async def _cert_list(s: Services, a: argparse.Namespace) -> int:
    now = s.engine.now()
    print(f"{'NAME':<24} {'ROLE':<9} {'SCOPE':<20} {'STATE':<8} {'NOT AFTER':<17} SERIAL")
    for c in await _service(s).list_certificates():
        state = "revoked" if c.revoked_at else "expired" if c.not_after <= now else "live"
        print(
            f"{c.name:<24} {c.role:<9} {c.scope or '*':<20} {state:<8} "
            f"{c.not_after:%Y-%m-%d %H:%M} {c.serial_hex}"
        )
    return 0


async def _cert_revoke(s: Services, a: argparse.Namespace) -> int:
    revoked = await _service(s).revoke_certificate_identity(a.name, actor=OPERATOR)
    serials = ", ".join(f"{serial:X}" for serial in revoked)
    print(f"admin certificate(s) of {a.name} revoked: {serials}")
    return 0


def _identity_options(p: argparse.ArgumentParser, *, days: int) -> None:
    p.add_argument("name", help="who this identity is (audit records name it admin:NAME)")
    p.add_argument("--role", required=True, type=admin_api.Role, choices=list(admin_api.Role))
    p.add_argument("--scope", help="a CA: the identity acts on it and its subtree only")
    p.add_argument("--days", type=int, default=days, help=f"lifetime (default {days})")


def register(sub: Subparsers) -> None:
    """Add ``privca admin ...`` to the top-level subparsers."""
    admin = sub.add_parser("admin", help="admin API identities").add_subparsers(
        dest="sub", required=True
    )
    token = admin.add_parser("token", help="admin API bearer tokens").add_subparsers(
        dest="action", required=True
    )
    p = token.add_parser("create", help="make a token (printed once)", parents=[STORAGE])
    _identity_options(p, days=90)
    p.set_defaults(handler=_token_create)
    p = token.add_parser("list", help="list tokens (never their secrets)", parents=[STORAGE])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_token_list)
    p = token.add_parser("revoke", help="revoke a token", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_token_revoke)
    cert = admin.add_parser("cert", help="admin API client certificates").add_subparsers(
        dest="action", required=True
    )
    p = cert.add_parser(
        "create", help="issue a client certificate from the admin CA", parents=[STORAGE]
    )
    _identity_options(p, days=365)
    p.add_argument("--out", required=True, help="directory for NAME.pem, NAME.key, admin-ca.pem")
    p.set_defaults(handler=_cert_create)
    p = cert.add_parser("list", help="list admin certificates", parents=[STORAGE])
    p.set_defaults(handler=_cert_list)
    p = cert.add_parser("revoke", help="revoke every admin certificate of NAME", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_cert_revoke)
