"""PostgreSQL TLS: libpq's ``sslmode``/``sslrootcert`` mapped onto asyncpg's ``ssl`` argument.

Operators write the libpq parameters they know, in the database URL
(``?sslmode=verify-full&sslrootcert=/etc/privca/db-ca.pem``) or in the config
(``database_sslmode``, ``database_sslrootcert``; the URL wins). They are taken
out of the URL and turned into one ``ssl.SSLContext`` that SQLAlchemy's engine
and the raw asyncpg pool both use, so no connection can skip verification.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

__all__ = ["SSLMODES", "PgTls", "from_url"]

# libpq's sslmode values (PostgreSQL docs, 34.19.1).
SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_PARAMS: Final = ("sslmode", "sslrootcert", "sslcert", "sslkey")


@dataclass(frozen=True, slots=True)
class PgTls:
    """A database URL without its TLS parameters, and asyncpg's ``ssl`` argument."""

    url: str
    # None: asyncpg's default (libpq's "prefer"); False: no TLS; a str: asyncpg's own
    # mode ("allow", "prefer"); a context: TLS with exactly that verification.
    ssl: ssl.SSLContext | str | bool | None


def from_url(
    url: str,
    *,
    sslmode: str | None = None,
    sslrootcert: Path | None = None,
    sslcert: Path | None = None,
    sslkey: Path | None = None,
) -> PgTls:
    """Split libpq TLS parameters off ``url`` (config values fill the ones it lacks).

    Raises:
        ValueError: an unknown sslmode, or a root certificate file that cannot be read.
    """
    parsed = make_url(url)
    query = dict(parsed.query)
    picked = {name: query.pop(name, None) for name in _PARAMS}
    mode = _one(picked["sslmode"]) or sslmode
    rootcert = _path(picked["sslrootcert"]) or sslrootcert
    cert = _path(picked["sslcert"]) or sslcert
    key = _path(picked["sslkey"]) or sslkey
    stripped = parsed.set(query=query).render_as_string(hide_password=False)
    if mode is None and rootcert is None and cert is None:
        return PgTls(stripped, None)
    if mode is None:
        # libpq: a root certificate given without a mode verifies the chain (verify-ca).
        mode = "verify-ca" if rootcert is not None else "prefer"
    if mode not in SSLMODES:
        raise ValueError(f"sslmode {mode!r} is not one of {', '.join(SSLMODES)}")
    if mode == "disable":
        return PgTls(stripped, False)
    if mode in {"allow", "prefer"}:
        return PgTls(stripped, mode)
    return PgTls(stripped, _context(mode, rootcert, cert, key))


def _context(
    mode: str, rootcert: Path | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "require" and rootcert is None:
        # libpq: encrypted, server not verified. Named in the README as not for production.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if rootcert is not None and str(rootcert) != "system":
            # Only the given anchors (libpq's semantics), not the system store as well.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_verify_locations(cafile=str(rootcert))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"sslrootcert {rootcert}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
        # verify-ca: the chain only; verify-full: the chain and the host name.
        ctx.check_hostname = mode == "verify-full"
    if cert is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"sslcert {cert}: {exc}") from exc
    return ctx


def _one(value: str | tuple[str, ...] | None) -> str | None:
    if isinstance(value, tuple):
        return value[-1] if value else None
    return value


def _path(value: str | tuple[str, ...] | None) -> Path | None:
    text = _one(value)
    return Path(text) if text else None
