"""Admin API fixtures: a real database, hierarchy root -> teamA, teamB, tokens per role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.admin import links, routes
from server.ca import api, grants, keys
from server.ca.admin import api as admin_api
from server.ca.status import api as status_api
from server.ca.types import AuditEvent, CertificateRecord, KeyAlgorithm, Principal
from server.store.admin_repository import SqlAdminRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository
from tests.support import FakeClock

OP = Principal("operator", "test")
ADMIN_CA = "privca-admin"
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def csr_pem(name: str = "svc.example.com") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, keys.signature_hash(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class AdminEnv:
    """Everything an admin API test needs."""

    engine: api.CAEngine
    service: admin_api.AdminService
    client: TestClient[Any, Any]
    leaves: dict[str, CertificateRecord]
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)

    async def token(
        self, name: str, role: admin_api.Role, scope: str | None, *, days: int = 30
    ) -> str:
        _, secret = await self.service.create_token(
            name, role=role, scope=scope, lifetime=timedelta(days=days), actor=OP
        )
        self.tokens[name] = secret
        return secret

    async def denials(self) -> list[AuditEvent]:
        return [e for e in await self.engine.audit_log(limit=1000) if e.action == "admin.denied"]

    async def call(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> tuple[int, Any, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        resp = await self.client.request(method, links.PREFIX + path, headers=headers, json=json)
        body: Any = (
            await resp.json(content_type=None) if "json" in resp.content_type else await resp.text()
        )
        return resp.status, body, resp.content_type


async def build_env(
    db: Database, client_factory: ClientFactory, key_backend: keys.KeyBackend
) -> AdminEnv:
    repo = SqlRepository(db)
    clock = FakeClock(datetime.now(UTC))
    engine = api.CAEngine(
        repo, key_backend, settings=api.EngineSettings(default_ca="teamA"), clock=clock
    )
    status = status_api.StatusService(engine, repo, SqlStatusRepository(db)).attach()
    service = admin_api.AdminService(
        engine, SqlAdminRepository(db), admin_ca=ADMIN_CA, base_grant=grants.OPERATOR, crls=status
    )
    await service.ensure_admin_ca(actor=OP, key_algorithm=KeyAlgorithm.EC_P256)
    await engine.create_root("root", actor=OP)
    leaves = {}
    for team in ("teamA", "teamB"):
        await engine.create_subordinate(team, parent="root", actor=OP)
        issued = await engine.issue(
            csr_pem(f"{team.lower()}.example.com").encode(),
            principal=OP,
            grant=grants.OPERATOR,
            profile="tls-server",
            ca=team,
        )
        leaves[team] = issued.record
    app = web.Application()
    app.add_subapp(links.PREFIX, routes.build_app(service))
    client = await client_factory(app)
    return AdminEnv(engine=engine, service=service, client=client, leaves=leaves, clock=clock)


@pytest.fixture
async def env(
    database: Database, aiohttp_client: ClientFactory, key_backend: keys.Pkcs8KeyBackend
) -> AdminEnv:
    return await build_env(database, aiohttp_client, key_backend)
