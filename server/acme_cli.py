"""``privca acme ...`` commands and the ACME flags of ``privca serve``.

``privca acme eab create|list|revoke`` manage External Account Binding keys in
the same database ``serve`` uses. Kept out of ``server/cli.py`` so that file
only registers these.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from typing import Any

from server.acme_app import build_registration
from server.bootstrap import Services
from server.config import ConfigError, Settings

__all__ = ["add_acme_parser", "add_serve_flags", "apply_serve_flags"]


def add_serve_flags(serve: argparse.ArgumentParser) -> None:
    """Add the ACME options of ``privca serve`` (each also settable under ``[acme]``)."""
    serve.add_argument(
        "--acme-resolve-all-to",
        metavar="IP",
        help="ACME test mode: validate every identifier at IP",
    )
    serve.add_argument("--acme-http01-port", type=int, metavar="N", help="http-01 port (80)")
    serve.add_argument(
        "--acme-tlsalpn01-port", type=int, metavar="N", help="tls-alpn-01 port (443)"
    )
    serve.add_argument(
        "--acme-dns-resolver", metavar="HOST:PORT", help="DNS server for dns-01 lookups"
    )
    serve.add_argument(
        "--acme-eab-required", action="store_true", default=None, help="require EAB on newAccount"
    )


def apply_serve_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """Return settings with the ``--acme-*`` flags applied over the config file."""
    update: dict[str, Any] = {
        key: value
        for key, value in {
            "resolve_all_to": args.acme_resolve_all_to,
            "http01_port": args.acme_http01_port,
            "tlsalpn01_port": args.acme_tlsalpn01_port,
            "dns_resolver": args.acme_dns_resolver,
            "eab_required": args.acme_eab_required,
        }.items()
        if value is not None
    }
    if not update:
        return settings
    try:
        acme = type(settings.acme).model_validate(settings.acme.model_dump() | update)
    except ValueError as exc:
        raise ConfigError(f"invalid ACME option: {exc}") from exc
    return settings.model_copy(update={"acme": acme})


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def _eab_create(s: Services, a: argparse.Namespace) -> int:
    key = await build_registration(s).accounts.create_eab_key()
    if a.json:
        print(json.dumps({"kid": key.kid, "hmac": _b64u(key.hmac_key)}))  # noqa: T201
    else:
        print(f"{key.kid} {_b64u(key.hmac_key)}")  # noqa: T201
    return 0


async def _eab_list(s: Services, a: argparse.Namespace) -> int:
    keys = await build_registration(s).accounts.list_eab_keys()
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
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    print(f"{'KID':<24} {'CREATED':<26} {'REVOKED':<8} ACCOUNT")  # noqa: T201
    for r in rows:
        print(f"{r['kid']:<24} {r['created']:<26} {r['revoked']!s:<8} {r['account'] or '-'}")  # noqa: T201
    return 0


async def _eab_revoke(s: Services, a: argparse.Namespace) -> int:
    await build_registration(s).accounts.revoke_eab_key(a.kid)
    print(f"revoked EAB key {a.kid}")  # noqa: T201
    return 0


def add_acme_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``privca acme eab create|list|revoke``."""
    acme = sub.add_parser("acme", help="ACME server administration")
    groups = acme.add_subparsers(dest="sub", required=True)
    eab = groups.add_parser("eab", help="External Account Binding keys").add_subparsers(
        dest="sub_action", required=True
    )
    p = eab.add_parser("create", help="create a key; prints KID and base64url HMAC key")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eab_create)
    p = eab.add_parser("list", help="list keys")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_eab_list)
    p = eab.add_parser("revoke", help="revoke a key")
    common(p)
    p.add_argument("kid")
    p.set_defaults(handler=_eab_revoke)
