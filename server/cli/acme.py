"""``privca acme eab create|list|revoke``: External Account Binding keys.

Manages the keys in the same database ``serve`` uses. The ``--acme-*`` flags of
``privca serve`` live in ``serve.py`` with the other serve options.
"""

from __future__ import annotations

import argparse
import base64
import json

from server.cli.options import STORAGE, Subparsers
from server.wiring import Services, build_acme_service

__all__ = ["register"]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def _eab_create(s: Services, a: argparse.Namespace) -> int:
    key = await build_acme_service(s).accounts.create_eab_key()
    if a.json:
        print(json.dumps({"kid": key.kid, "hmac": _b64u(key.hmac_key)}))
    else:
        print(f"{key.kid} {_b64u(key.hmac_key)}")
    return 0


async def _eab_list(s: Services, a: argparse.Namespace) -> int:
    keys = await build_acme_service(s).accounts.list_eab_keys()
    rows = [
        {
            "kid": k.kid,
            "created": k.created_at.isoformat(),
            "revoked": k.revoked,
            "account": k.account_id,
        }
        for k in keys
    ]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'KID':<24} {'CREATED':<26} {'REVOKED':<8} ACCOUNT")
    for r in rows:
        print(f"{r['kid']:<24} {r['created']:<26} {r['revoked']!s:<8} {r['account'] or '-'}")
    return 0


async def _eab_revoke(s: Services, a: argparse.Namespace) -> int:
    await build_acme_service(s).accounts.revoke_eab_key(a.kid)
    print(f"revoked EAB key {a.kid}")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca acme eab create|list|revoke`` to the top-level subparsers."""
    acme = sub.add_parser("acme", help="ACME server administration")
    groups = acme.add_subparsers(dest="sub", required=True)
    eab = groups.add_parser("eab", help="External Account Binding keys").add_subparsers(
        dest="sub_action", required=True
    )
    p = eab.add_parser(
        "create", help="create a key; prints KID and base64url HMAC key", parents=[STORAGE]
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eab_create)
    p = eab.add_parser("list", help="list keys", parents=[STORAGE])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eab_list)
    p = eab.add_parser("revoke", help="revoke a key", parents=[STORAGE])
    p.add_argument("kid")
    p.set_defaults(handler=_eab_revoke)
