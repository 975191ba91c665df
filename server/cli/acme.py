"""``privca acme eab ...`` (External Account Binding keys) and ``privca acme directory ...``.

Manages EAB keys and named ACME directories in the same database ``serve`` uses.
The ``--acme-*`` flags of ``privca serve`` live in ``serve.py`` with the other serve
options.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
from dataclasses import replace

from server.ca.acme import api as acme_api
from server.cli.options import OPERATOR, STORAGE, Subparsers
from server.config import ConfigError
from server.wiring import Services, build_acme_directories, build_acme_service

__all__ = ["register"]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def _eab_create(s: Services, a: argparse.Namespace) -> int:
    key = await build_acme_service(s).accounts.create_eab_key(actor=OPERATOR)
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
            "accounts": list(k.account_ids),
        }
        for k in keys
    ]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'KID':<24} {'CREATED':<26} {'REVOKED':<8} ACCOUNTS")
    for k in keys:
        bound = ",".join(k.account_ids) or "-"
        print(f"{k.kid:<24} {k.created_at.isoformat():<26} {k.revoked!s:<8} {bound}")
    return 0


async def _eab_revoke(s: Services, a: argparse.Namespace) -> int:
    done = await build_acme_service(s).accounts.revoke_eab_key(
        a.kid, actor=OPERATOR, deactivate_accounts=a.deactivate_accounts
    )
    print(f"revoked EAB key {a.kid}")
    for account_id in done:
        print(f"deactivated account {account_id}")
    return 0


async def _directory_add(s: Services, a: argparse.Namespace) -> int:
    directory = acme_api.AcmeDirectory(
        name=a.name,
        ca=a.ca,
        profiles=tuple(a.profile) if a.profile else None,
        wildcard=not a.no_wildcard,
        eab_required=True if a.eab_required else None,
    )
    if a.allow_dns:
        directory = replace(directory, dns_suffixes=tuple(a.allow_dns))
    if a.allow_ip:
        try:
            ranges = tuple(ipaddress.ip_network(c, strict=False) for c in a.allow_ip)
        except ValueError as exc:
            raise ConfigError(f"--allow-ip: {exc}") from exc
        directory = replace(directory, ip_ranges=ranges)
    await build_acme_directories(s).add(directory, actor=OPERATOR)
    print(f"created ACME directory {a.name}: /acme/{a.name}/directory (CA {a.ca})")
    return 0


def _directory_row(d: acme_api.AcmeDirectory) -> dict[str, object]:
    return {
        "name": d.name,
        "ca": d.ca,
        "profiles": list(d.profiles) if d.profiles is not None else ["*"],
        "allow_dns": list(d.dns_suffixes),
        "allow_ip": [str(n) for n in d.ip_ranges],
        "wildcard": d.wildcard,
        "eab_required": d.eab_required,
        "source": d.source,
    }


async def _directory_list(s: Services, a: argparse.Namespace) -> int:
    found = await build_acme_directories(s).list_all()
    if a.json:
        print(json.dumps([_directory_row(d) for d in found], indent=2))
        return 0
    print(f"{'DIRECTORY':<16} {'CA':<12} {'DNS':<24} {'WILDCARD':<9} {'EAB':<8} SOURCE")
    for d in found:
        eab = "global" if d.eab_required is None else str(d.eab_required).lower()
        dns = ",".join(d.dns_suffixes)
        print(f"{d.name:<16} {d.ca:<12} {dns:<24} {str(d.wildcard).lower():<9} {eab:<8} {d.source}")
    return 0


async def _directory_remove(s: Services, a: argparse.Namespace) -> int:
    await build_acme_directories(s).remove(a.name, actor=OPERATOR)
    print(f"removed ACME directory {a.name} (its accounts can no longer log in)")
    return 0


def _register_directories(groups: Subparsers) -> None:
    d = groups.add_parser(
        "directory", help="named ACME directories (/acme/NAME/directory), each with its CA"
    ).add_subparsers(dest="sub_action", required=True)
    p = d.add_parser(
        "add",
        help="add a directory bound to a CA with its identifier policy",
        parents=[STORAGE],
    )
    p.add_argument("name", help="directory name: served at /acme/NAME/directory")
    p.add_argument("--ca", required=True, help="the CA that issues this directory's certificates")
    p.add_argument(
        "--allow-dns",
        action="append",
        metavar="SUFFIX",
        help="DNS suffix names may lie under (repeatable; default: any name challenges prove)",
    )
    p.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="range IP identifiers must lie in (repeatable; default: any address)",
    )
    p.add_argument(
        "--no-wildcard", action="store_true", help="refuse wildcard names (*.example.com)"
    )
    p.add_argument(
        "--eab-required",
        action="store_true",
        help="require External Account Binding on newAccount (default: the global setting)",
    )
    p.add_argument(
        "--profile",
        action="append",
        metavar="P",
        help="ACME profile offered (repeatable; default: every configured profile)",
    )
    p.set_defaults(handler=_directory_add)
    p = d.add_parser("list", help="list directories (config file and stored)", parents=[STORAGE])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_directory_list)
    p = d.add_parser("remove", help="remove a stored directory", parents=[STORAGE])
    p.add_argument("name")
    p.set_defaults(handler=_directory_remove)


def register(sub: Subparsers) -> None:
    """Add ``privca acme eab ...`` and ``privca acme directory ...`` to the subparsers."""
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
    p.add_argument(
        "--deactivate-accounts",
        action="store_true",
        help="also deactivate every account bound with the key",
    )
    p.set_defaults(handler=_eab_revoke)
    _register_directories(groups)
