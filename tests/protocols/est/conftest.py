"""EST protocol fixtures: an engine on a real database, the EST sub-app, helpers for bodies."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.common import body
from protocols.est import routes
from server.ca import api, keys
from server.ca.est import api as est_api
from server.ca.types import CertQuery, Principal
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from tests.support import FakeClock

OP = Principal("operator", "test")
PREFIX = "/.well-known/est"
PASSWORD = "correct-horse-battery"

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@dataclass
class EstEnv:
    """Everything an EST protocol test needs."""

    engine: api.CAEngine
    service: est_api.EstService
    client: TestClient[Any, Any]
    clock: FakeClock
    chain: tuple[x509.Certificate, ...]

    async def cert_count(self) -> int:
        return len(await self.engine.find_certificates(CertQuery(limit=10_000)))

    async def pending_count(self) -> int:
        return len(await self.service.list_pending(None))

    async def add_label(self, name: str, **policy: Any) -> str:
        """Add a label (with ``policy``) and user dev1 on it; return its URL prefix."""
        await self.service.add_label(est_api.EstLabel(name=name, **policy), actor=OP)
        await self.service.add_user(name, "dev1", PASSWORD, actor=OP)
        return f"{PREFIX}/{name}"


def b64(der: bytes, *, width: int = 64) -> bytes:
    """Base64 with line breaks, as RFC 8951 clients send it."""
    raw = base64.b64encode(der)
    return b"\n".join(raw[i : i + width] for i in range(0, len(raw), width)) + b"\n"


def basic(user: str = "dev1", password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


PKCS10 = {"Content-Type": "application/pkcs10"}


def csr_der(
    cn: str = "fire-sensor-123",
    *,
    key: Any = None,
    sans: tuple[x509.GeneralName, ...] = (),
    serial_number: str | None = "FS123",
) -> tuple[bytes, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial_number:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    csr = builder.sign(key, keys.signature_hash(key))
    return csr.public_bytes(serialization.Encoding.DER), key


def certs_from_body(body: bytes) -> list[x509.Certificate]:
    der = base64.b64decode(b"".join(body.split()), validate=True)
    return pkcs7.load_der_pkcs7_certificates(der)


def rfc9440(cert: x509.Certificate) -> str:
    return ":" + base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode() + ":"


def make_external_ca(
    cn: str = "Acme Devices IDevID CA", *, expired: bool = False
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A manufacturer CA unrelated to privca (for per-label trust anchors)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(days=30), now - timedelta(days=1))
        if expired
        else (now - timedelta(days=1), now + timedelta(days=365))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def external_leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str = "idevid-0001",
    *,
    expired: bool = False,
    client_auth: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A manufacturer's device certificate (IDevID), with the clientAuth EKU unless told."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(days=30), now - timedelta(days=1))
        if expired
        else (now - timedelta(days=1), now + timedelta(days=30))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if client_auth:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def label_app(service: est_api.EstService, **kwargs: Any) -> web.Application:
    """The EST sub-app mounted where privca mounts it."""
    # The request body limit is the root application's (aiohttp sizes requests there).
    root = web.Application(
        client_max_size=kwargs.get("max_body_bytes", 64 * 1024), handler_args=body.SERVER_OPTIONS
    )
    root.add_subapp(PREFIX, routes.build_app(service, **kwargs))
    return root


@pytest.fixture
async def est_env(
    sql_engine: api.CAEngine, database: Database, aiohttp_client: ClientFactory
) -> EstEnv:
    """Root + issuing CA, user dev1 on the default label, EST app trusting proxy 127.0.0.1."""
    await sql_engine.create_root("root", actor=OP)
    await sql_engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)
    clock = FakeClock(datetime.now(UTC))
    service = est_api.EstService(
        sql_engine, SqlEstRepository(database), clock=clock, retry_after=42
    )
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    client = await aiohttp_client(
        label_app(service, trusted_proxies=["127.0.0.1/32", "::1/128"], max_body_bytes=8192)
    )
    chain = await sql_engine.chain_of(await sql_engine.get_ca("issuing"))
    return EstEnv(engine=sql_engine, service=service, client=client, clock=clock, chain=chain)
