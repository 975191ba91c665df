"""PostgreSQL over verified TLS, live: a private cluster with ssl=on on a spare port.

Needs PostgreSQL's server binaries (initdb, pg_ctl); as root they run as the
``postgres`` user through runuser. Skips with a message where they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from server.ca.errors import StorageUnavailableError
from server.store.database import Database
from tests import serve_process

_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass(frozen=True, slots=True)
class TlsPostgres:
    port: int
    rootcert: Path
    other_rootcert: Path


def _cert(
    subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, *, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        # Only the DNS name: connecting to 127.0.0.1 under verify-full must fail.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    if not _BIN_DIRS or not (_BIN_DIRS[0] / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    bindir = _BIN_DIRS[0]
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: initdb refuses root")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="privca-pgtls-"))
    if as_postgres:
        shutil.chown(base, "postgres")
    data = base / "data"
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    ca_cert, ca_key = _cert("db-ca", None, ca=True)
    leaf, leaf_key = _cert("localhost", (ca_cert.subject, ca_key), ca=False)
    other_ca, _ = _cert("other-ca", None, ca=True)
    (data / "server.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (data / "server.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(data / "server.key", 0o600)
    if as_postgres:
        shutil.chown(data / "server.crt", "postgres")
        shutil.chown(data / "server.key", "postgres")
    port = serve_process.free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{base}'\nssl = on\n"
        )
    rootcert = base / "db-ca.pem"
    rootcert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other = base / "other-ca.pem"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log")]
    subprocess.run([*ctl, "-w", "start"], check=True, capture_output=True)
    try:
        yield TlsPostgres(port, rootcert, other)
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


async def _select_one(
    url: str, *, sslmode: str | None = None, sslrootcert: Path | None = None
) -> tuple[object, object]:
    """Return whether the SQLAlchemy and the raw asyncpg connection each use TLS."""
    db = Database(url, sslmode=sslmode, sslrootcert=sslrootcert)
    try:
        row = await db.fetch_first(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
        async with db.pg() as conn:
            raw = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return (row[0] if row else None, raw)
    finally:
        await db.close()


async def test_verify_full_connects_over_tls(tls_postgres: TlsPostgres) -> None:
    url = f"postgresql+asyncpg://postgres@localhost:{tls_postgres.port}/postgres"
    query = f"?sslmode=verify-full&sslrootcert={tls_postgres.rootcert}"
    assert await _select_one(url + query) == (True, True)


async def test_verify_full_refuses_another_name(tls_postgres: TlsPostgres) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{tls_postgres.port}/postgres"
    with pytest.raises(StorageUnavailableError):
        await _select_one(url, sslmode="verify-full", sslrootcert=tls_postgres.rootcert)
    # verify-ca checks the chain only: the same server is accepted by address.
    assert await _select_one(url, sslmode="verify-ca", sslrootcert=tls_postgres.rootcert) == (
        True,
        True,
    )


async def test_verify_full_refuses_another_ca(tls_postgres: TlsPostgres) -> None:
    url = f"postgresql+asyncpg://postgres@localhost:{tls_postgres.port}/postgres"
    with pytest.raises(StorageUnavailableError):
        await _select_one(url, sslmode="verify-full", sslrootcert=tls_postgres.other_rootcert)
