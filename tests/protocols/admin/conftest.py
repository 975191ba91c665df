"""Admin API fixtures: a real database, hierarchy root -> teamA, teamB, tokens per role.

Each team CA has a leaf, an EST label (``<team>-est``, approval required) with an
account and a held enrollment, and a named ACME directory (``<team lower>-acme``);
one EAB key exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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
from protocols.common import body
from server.ca import api, grants, keys
from server.ca.acme import api as acme_api
from server.ca.admin import api as admin_api
from server.ca.est import api as est_api
from server.ca.status import api as status_api
from server.ca.types import AuditEvent, CertificateRecord, KeyAlgorithm, Principal
from server.store.acme_repository import SqlAcmeRepository
from server.store.admin_repository import SqlAdminRepository
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository
from tests.support import TEST_SEALER, FakeClock

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


class NoNetwork:
    """ACME validation ports that are never reached: the admin API validates nothing."""

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        raise acme_api.NetworkError("connection", "no network in admin tests")

    async def txt(self, name: str) -> Sequence[str]:
        raise acme_api.NetworkError("dns", "no network in admin tests")

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        raise acme_api.NetworkError("tls", "no network in admin tests")


def label_of(team: str) -> str:
    """Return the EST label the fixture makes on a team CA."""
    return f"{team}-est"


def directory_of(team: str) -> str:
    """Return the ACME directory the fixture makes on a team CA."""
    return f"{team.lower()}-acme"


@dataclass
class AdminEnv:
    """Everything an admin API test needs."""

    engine: api.CAEngine
    service: admin_api.AdminService
    client: TestClient[Any, Any]
    leaves: dict[str, CertificateRecord]
    clock: FakeClock
    est: est_api.EstService
    est_repo: SqlEstRepository
    acme: acme_api.AcmeService
    directories: acme_api.Directories
    pending: dict[str, str]
    eab_kid: str
    tokens: dict[str, str] = field(default_factory=dict)
    # What a test's preparation leaves for its request (e.g. a signed certificate).
    scratch: dict[str, str] = field(default_factory=dict)

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

    async def last_seq(self) -> int:
        """Return the seq of the newest audit record."""
        seq = 0
        async for event in self.engine.audit_records():
            seq = event.seq or seq
        return seq

    async def records_after(self, seq: int) -> list[AuditEvent]:
        """Return the audit records appended after ``seq``, oldest first."""
        return [e async for e in self.engine.audit_records(after_seq=seq)]

    async def call(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> tuple[int, Any, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        resp = await self.client.request(method, links.PREFIX + path, headers=headers, json=json)
        body: Any = (
            await resp.json(content_type=None)
            if resp.content_type.endswith("json")
            else await resp.text()
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
    est_repo = SqlEstRepository(db)
    est = est_api.EstService(engine, est_repo, clock=clock)
    acme_repo = SqlAcmeRepository(db, TEST_SEALER)
    net = NoNetwork()
    ports = acme_api.ValidationPorts(http=net, dns=net, tls=net)
    acme = acme_api.AcmeService(engine, acme_repo, ports=ports, clock=clock)
    directories = acme_api.Directories(
        engine, acme_repo, ports=ports, settings=acme.settings, clock=clock
    )
    service = admin_api.AdminService(
        engine,
        SqlAdminRepository(db),
        admin_ca=ADMIN_CA,
        base_grant=grants.OPERATOR,
        crls=status,
        est=est,
        acme_directories=directories,
        eab=acme.accounts,
    )
    await service.ensure_admin_ca(actor=OP, key_algorithm=KeyAlgorithm.EC_P256)
    await engine.create_root("root", actor=OP)
    leaves = {}
    pending: dict[str, str] = {}
    # A cheap hash: the fixture's accounts are never logged in with.
    cheap = est_api.hash_password("fixture-password", iterations=1000)
    for team in ("teamA", "teamB"):
        ca = await engine.create_subordinate(team, parent="root", actor=OP)
        issued = await engine.issue(
            csr_pem(f"{team.lower()}.example.com").encode(),
            principal=OP,
            grant=grants.OPERATOR,
            profile="tls-server",
            ca=team,
        )
        leaves[team] = issued.record
        label = label_of(team)
        await est.add_label(est_api.EstLabel(name=label, ca=team, approval_required=True), actor=OP)
        event = AuditEvent(at=clock.now(), actor=str(OP), action="test.user", target=label)
        await est_repo.put_user(
            est_api.EstUser(
                label=label, username="device1", password_hash=cheap, created_at=clock.now()
            ),
            audit=event,
        )
        held = est_api.PendingEnrollment(
            id=est_api.PendingId(f"{team.lower()}0000000000"[:16]),
            label=label,
            operation=est_api.EstOperation.ENROLL,
            requester=f"est:{label}/device1",
            key_fingerprint=f"fp-{team}",
            subject=f"CN=sensor-{team}",
            csr_der=b"",
            status=est_api.PendingStatus.PENDING,
            created_at=clock.now(),
            ca_id=ca.id,
        )
        await est_repo.add_pending(held)
        pending[team] = held.id
        await directories.add(acme_api.AcmeDirectory(name=directory_of(team), ca=team), actor=OP)
    eab = await acme.accounts.create_eab_key(actor=OP)
    # As the HTTPS app is built: bodies stay as sent (the API refuses content codings).
    app = web.Application(handler_args=body.SERVER_OPTIONS)
    app.add_subapp(links.PREFIX, routes.build_app(service))
    client = await client_factory(app)
    return AdminEnv(
        engine=engine,
        service=service,
        client=client,
        leaves=leaves,
        clock=clock,
        est=est,
        est_repo=est_repo,
        acme=acme,
        directories=directories,
        pending=pending,
        eab_kid=eab.kid,
    )


@pytest.fixture
async def env(
    database: Database, aiohttp_client: ClientFactory, key_backend: keys.Pkcs8KeyBackend
) -> AdminEnv:
    return await build_env(database, aiohttp_client, key_backend)
