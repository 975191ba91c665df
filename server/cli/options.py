"""Options and argument types shared by the ``privca`` commands.

Parent parsers (argparse ``parents=``) declare each shared option once: the
storage options every command takes, ``--key-type``, ``--key-backend``, and the CA options of
``ca create-root``/``create-sub``. Output helpers write to a file or stdout.
Must not import aiohttp or the storage layer.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import hierarchy, issuance
from server.ca.errors import EngineError
from server.ca.types import CAMode, KeyAlgorithm, Principal
from server.wiring import Services

__all__ = [
    "CA_OPTIONS",
    "KEY_BACKEND",
    "KEY_TYPE",
    "OPERATOR",
    "STORAGE",
    "Handler",
    "Subparsers",
    "lifetime",
    "name_constraints",
    "parse_san",
    "parse_subject",
    "pem",
    "write",
]


def _operator() -> Principal:
    """Return who runs this command: the OS user, from this host (the audit trail's who/where)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (a bare container uid)
        user = f"uid-{os.getuid()}"
    return Principal("operator", user, source=f"cli@{socket.gethostname()}")


OPERATOR: Final = _operator()
Handler: TypeAlias = Callable[[Services, argparse.Namespace], Awaitable[int]]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def parse_san(value: str) -> x509.GeneralName:
    """Parse ``dns:x``, ``ip:x``, ``uri:x``, ``email:x`` or a bare IP address / DNS name."""
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


def parse_subject(value: str) -> x509.Name:
    """Parse a subject DN (``CN=x,O=y``)."""
    try:
        return issuance.parse_name(value)
    except EngineError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from exc


def lifetime(args: argparse.Namespace) -> timedelta | None:
    """Return the lifetime given by ``--days`` or ``--hours``, None for the default."""
    if getattr(args, "days", None):
        return timedelta(days=args.days)
    if getattr(args, "hours", None):
        return timedelta(hours=args.hours)
    return None


def name_constraints(args: argparse.Namespace) -> x509.NameConstraints | None:
    """Return the permitted subtrees of ``--permit-dns``/``--permit-ip``, None if none.

    Raises:
        EngineError: MALFORMED for a value that is no DNS name or IP network.
    """
    return hierarchy.permitted_subtrees(args.permit_dns or (), args.permit_ip or ())


def pem(certs: Sequence[x509.Certificate]) -> str:
    """Return certificates as concatenated PEM."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def write(path: str | None, text: str) -> None:
    """Write ``text`` to ``path``, or to stdout for None or ``-``."""
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")


def _storage() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", type=Path, help="data directory (default ./data)")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--database-url", help="e.g. postgresql+asyncpg://user@host/db")
    return p


def _key_type() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--key-type",
        type=KeyAlgorithm,
        default=KeyAlgorithm.EC_P256,
        choices=list(KeyAlgorithm),
        help="key algorithm (default ec-p256)",
    )
    return p


def _key_backend() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--key-backend",
        choices=["pkcs8", "pkcs11"],
        help="where the CA key lives: pkcs8 (encrypted in the database, default) or "
        "pkcs11 (generated in the [pkcs11] token, never leaves it)",
    )
    return p


def _ca_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, parents=[KEY_TYPE, KEY_BACKEND])
    p.add_argument("--subject", type=parse_subject, help="subject DN (default CN=NAME,O=privca)")
    p.add_argument("--days", type=int, help="lifetime in days")
    p.add_argument("--path-len", type=int, help="pathLenConstraint (default from the tier)")
    p.add_argument("--mode", type=CAMode, default=CAMode.GENERAL, choices=list(CAMode))
    p.add_argument("--permit-dns", action="append", help="name constraint: permitted DNS subtree")
    p.add_argument("--permit-ip", action="append", help="name constraint: permitted IP network")
    return p


# Parents of every command (--data-dir, --config, --database-url), of each command that
# makes a key (--key-type), of each that makes a CA key (--key-backend), and of the CA
# creation commands.
STORAGE: Final = _storage()
KEY_TYPE: Final = _key_type()
KEY_BACKEND: Final = _key_backend()
CA_OPTIONS: Final = _ca_options()
