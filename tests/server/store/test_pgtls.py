"""PostgreSQL TLS: libpq sslmode/sslrootcert from the URL or config become asyncpg's ``ssl``."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from server.ca.errors import StorageUnavailableError
from server.config import ConfigError, load_settings
from server.store import pgtls
from server.store.database import Database
from tests.conftest import PgDatabase

_URL = "postgresql+asyncpg://privca@db.internal:5432/privca"


@pytest.fixture
def rootcert(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db-ca")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "db-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_verify_full_from_the_url(rootcert: Path) -> None:
    tls = pgtls.from_url(f"{_URL}?sslmode=verify-full&sslrootcert={rootcert}&application_name=x")
    assert tls.url == f"{_URL}?application_name=x"
    assert isinstance(tls.ssl, ssl.SSLContext)
    assert tls.ssl.verify_mode is ssl.CERT_REQUIRED
    assert tls.ssl.check_hostname is True
    # Exactly the given anchor, not the system store besides.
    assert [c["subject"] for c in tls.ssl.get_ca_certs()] == [((("commonName", "db-ca"),),)]


def test_verify_ca_checks_the_chain_not_the_name(rootcert: Path) -> None:
    tls = pgtls.from_url(_URL, sslmode="verify-ca", sslrootcert=rootcert)
    assert isinstance(tls.ssl, ssl.SSLContext)
    assert tls.ssl.verify_mode is ssl.CERT_REQUIRED
    assert tls.ssl.check_hostname is False


def test_the_url_wins_over_the_config(rootcert: Path) -> None:
    tls = pgtls.from_url(f"{_URL}?sslmode=disable", sslmode="verify-full", sslrootcert=rootcert)
    assert tls.ssl is False
    assert tls.url == _URL


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param(None, None, id="ok/none-asyncpg-default"),
        pytest.param("disable", False, id="ok/disable"),
        pytest.param("prefer", "prefer", id="ok/prefer"),
        pytest.param("allow", "allow", id="ok/allow"),
    ],
)
def test_modes_without_verification(mode: str | None, expected: object) -> None:
    assert pgtls.from_url(_URL, sslmode=mode).ssl == expected


def test_require_encrypts_without_verifying() -> None:
    tls = pgtls.from_url(f"{_URL}?sslmode=require")
    assert isinstance(tls.ssl, ssl.SSLContext)
    assert tls.ssl.verify_mode is ssl.CERT_NONE


def test_a_root_certificate_alone_means_verify_ca(rootcert: Path) -> None:
    tls = pgtls.from_url(f"{_URL}?sslrootcert={rootcert}")
    assert isinstance(tls.ssl, ssl.SSLContext)
    assert tls.ssl.verify_mode is ssl.CERT_REQUIRED
    assert tls.ssl.check_hostname is False


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("sslmode=verify-everything", "is not one of", id="fail/bad-mode"),
        pytest.param(
            "sslmode=verify-full&sslrootcert=/nonexistent", "sslrootcert", id="fail/no-file"
        ),
    ],
)
def test_bad_settings_are_refused(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pgtls.from_url(f"{_URL}?{query}")


def test_database_hands_the_context_to_both_pools(rootcert: Path) -> None:
    db = Database(f"{_URL}?sslmode=verify-full&sslrootcert={rootcert}")
    assert "sslmode" not in db.url
    assert "sslmode" not in str(db.engine.url)
    assert isinstance(db._ssl, ssl.SSLContext)


def test_config_validates_sslmode() -> None:
    with pytest.raises(ConfigError, match="database_sslmode"):
        load_settings(None, database_sslmode="verify")
    settings = load_settings(None, database_sslmode="verify-full", database_sslrootcert="/x.pem")
    assert settings.database_sslrootcert == Path("/x.pem")


@pytest.mark.postgres
async def test_verify_full_refuses_a_server_without_tls(
    rootcert: Path, pg_database: PgDatabase
) -> None:
    """The test PostgreSQL runs with ssl=off: verify-full must fail, never fall back to plain."""
    db = Database(pg_database.url, sslmode="verify-full", sslrootcert=rootcert)
    try:
        with pytest.raises(StorageUnavailableError):
            await db.fetch_first(text("SELECT 1"))
        with pytest.raises(StorageUnavailableError):  # the raw asyncpg pool too
            async with db.pg() as conn:
                await conn.fetchval("SELECT 1")
    finally:
        await db.close()
    plain = Database(pg_database.url, sslmode="disable")
    try:
        assert tuple(await plain.fetch_first(text("SELECT 1")) or ()) == (1,)
    finally:
        await plain.close()
