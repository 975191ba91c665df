"""Storage outages answered as outages, on PostgreSQL: every front end, the log, the recovery.

The database is made unreachable the way a stopped server looks to privca: its
connections are terminated and new ones refused (``ALLOW_CONNECTIONS false``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from server import app as server_app
from server import wiring
from server.ca.errors import StorageUnavailableError
from server.ca.types import Principal
from server.config import load_settings
from tests.conftest import _pg_base_url

pytestmark = pytest.mark.postgres

PASSWORD = "correct-horse-battery"
OP = Principal("operator", "test")


@dataclass
class Outage:
    """A fresh database that a test can take away and give back."""

    name: str
    admin: str

    async def _admin(self, sql: str, *args: object) -> None:
        conn = await asyncpg.connect(self.admin, timeout=10)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def begin(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.name,
        )

    async def end(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
async def outage_db() -> AsyncIterator[tuple[str, Outage]]:
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (CI sets CI=true and runs them)")
    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"privca_outage_{uuid.uuid4().hex[:10]}"
    outage = Outage(name, admin)
    await outage._admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}", outage
    finally:
        await outage._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _csr(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)) + b"\n"


def _basic() -> dict[str, str]:
    token = base64.b64encode(f"dev1:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/pkcs10"}


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303 - RFC 5019 CertID
    return req.public_bytes(serialization.Encoding.DER)


async def _enroll(https: TestClient[Any, Any], cn: str) -> tuple[int, dict[str, str], bytes]:
    resp = await https.post("/.well-known/est/simpleenroll", data=_csr(cn), headers=_basic())
    return resp.status, dict(resp.headers), await resp.read()


def _leaf(body: bytes) -> x509.Certificate:
    from cryptography.hazmat.primitives.serialization import pkcs7

    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]


async def test_outage_is_answered_as_an_outage_by_every_front_end_and_heals(
    outage_db: tuple[str, Outage],
    tmp_path: Path,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, outage = outage_db
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=url)
    async with wiring.open_services(settings, create=True) as services:
        await wiring.ensure_first_start(services)
        est = wiring.build_est_service(services)
        await est.add_user("default", "dev1", PASSWORD, actor=OP)
        issuing = await services.engine.get_ca(settings.ca.issuing_name)
        assert issuing.cert_der is not None
        issuer = x509.load_der_x509_certificate(issuing.cert_der)
        https = await aiohttp_client(server_app.create_https_app(services))
        http = await aiohttp_client(server_app.create_http_app(services))

        status, _, body = await _enroll(https, "before-outage")
        assert status == 200
        leaf = _leaf(body)
        good_ocsp = _ocsp_request(leaf, issuer)
        ocsp_headers = {"Content-Type": "application/ocsp-request"}
        answer = await http.post("/ocsp", data=good_ocsp, headers=ocsp_headers)
        assert ocsp.load_der_ocsp_response(await answer.read()).response_status.value == 0
        crl = await http.get(f"/crl/{issuing.id}.crl")
        assert crl.status == 200
        crl_der = await crl.read()
        cert = await http.get(f"/ca/{issuing.id}.cer")
        assert cert.status == 200
        assert await cert.read() == issuing.cert_der

        await outage.begin()
        await asyncio.sleep(1.1)  # past the CRL's one-second memo: the fallback must answer
        caplog.clear()
        caplog.set_level(logging.INFO)

        for n in range(5):
            status, headers, body = await _enroll(https, f"during-{n}")
            assert status == 503, body
            assert headers["Retry-After"] == "5"
            assert headers["Content-Type"].startswith("text/plain")
            assert len(body) < 100
        nonce = await https.head("/acme/new-nonce")
        assert nonce.status == 503
        assert nonce.headers["Retry-After"] == "5"
        problem = await https.post(
            "/acme/new-account", data=b"{}", headers={"Content-Type": "application/jose+json"}
        )
        assert problem.status in {400, 503}  # a malformed JWS is refused before storage
        nonce_get = await https.get("/acme/new-nonce")
        assert nonce_get.status == 503
        doc = await nonce_get.json(content_type="application/problem+json")
        assert doc["type"] == "urn:ietf:params:acme:error:serverInternal"
        assert doc["status"] == 503
        # Public, signed, in memory: served on.
        crl = await http.get(f"/crl/{issuing.id}.crl")
        assert crl.status == 200
        assert await crl.read() == crl_der
        await asyncio.sleep(1.1)
        cert = await http.get(f"/ca/{issuing.id}.cer")
        assert cert.status == 200
        assert await cert.read() == issuing.cert_der
        # OCSP: the cached answer, and tryLater (3) for anything storage must answer.
        answer = await http.post("/ocsp", data=good_ocsp, headers=ocsp_headers)
        assert ocsp.load_der_ocsp_response(await answer.read()).response_status.value == 0
        other = ec.generate_private_key(ec.SECP256R1())
        stranger = (
            x509.CertificateBuilder()
            .subject_name(leaf.subject)
            .issuer_name(issuer.subject)
            .public_key(other.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(leaf.not_valid_before_utc)
            .not_valid_after(leaf.not_valid_after_utc)
            .sign(other, hashes.SHA256())
        )
        miss = await http.post("/ocsp", data=_ocsp_request(stranger, issuer), headers=ocsp_headers)
        assert miss.status == 200
        assert ocsp.load_der_ocsp_response(await miss.read()).response_status.value == 3
        cacerts = await https.get("/.well-known/est/cacerts")
        assert cacerts.status in {200, 503}
        if cacerts.status == 503:
            assert "Retry-After" in cacerts.headers

        records = list(caplog.records)
        assert not [r for r in records if r.exc_info], "a known outage logged a traceback"
        assert not [r for r in records if r.levelno >= logging.ERROR]
        assert len(records) <= 20, [r.getMessage() for r in records]

        await outage.end()
        status, _, body = await _enroll(https, "after-outage")
        assert status == 200, body
        nonce = await https.head("/acme/new-nonce")
        assert nonce.status == 200


async def test_ca_issuers_serves_its_last_good_copy_and_find_ca_reports_the_outage(
    outage_db: tuple[str, Outage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = outage_db
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=url)
    async with wiring.open_services(settings, create=True) as services:
        await wiring.ensure_first_start(services)
        assert services.status is not None
        issuing = await services.engine.get_ca(settings.ca.issuing_name)
        der = await services.status.ca_certificate(issuing.id)

        async def unreachable(_ref: str) -> None:
            raise StorageUnavailableError()

        monkeypatch.setattr(services.engine, "get_ca", unreachable)
        # An outage is not an absent CA: first start must not create a second root.
        with pytest.raises(StorageUnavailableError):
            await services.engine.find_ca(settings.ca.root_name)
        assert await services.status.ca_certificate(issuing.id) == der
        with pytest.raises(StorageUnavailableError):
            await services.status.ca_certificate("never-served")
