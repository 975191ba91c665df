"""Fixtures: the ACME sub-app on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from protocols.acme import routes
from server.ca import api, keys
from server.ca.acme import api as acme_api
from server.ca.types import Principal
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.protocols.acme.support import AcmeClient, FakeNetwork
from tests.support import TEST_SEALER

OP = Principal("operator", "test")
AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@dataclass
class AcmeEnv:
    """One ACME server under test."""

    http: TestClient[Any, Any]
    registration: acme_api.AcmeService
    repo: SqlAcmeRepository
    engine: api.CAEngine
    network: FakeNetwork
    db: Database

    def client(self, key: Any = None) -> AcmeClient:
        return AcmeClient(self.http, key)


async def make_engine(db: Database, key_backend: keys.Pkcs8KeyBackend, **ca: Any) -> api.CAEngine:
    engine = api.CAEngine(
        SqlRepository(db), key_backend, settings=api.EngineSettings(default_ca="issuing")
    )
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0, **ca)
    return engine


@pytest.fixture
def acme_settings() -> acme_api.AcmeSettings:
    """Override in a test module to change the server's ACME policy."""
    return acme_api.AcmeSettings(
        validation=acme_api.ValidationSettings(attempts=1, retry_delay=0.0, timeout=2.0)
    )


@pytest.fixture
def ca_options() -> dict[str, Any]:
    """Override to give the issuing CA an identifier policy."""
    return {"dns_suffixes": (".internal",), "ip_networks": ("127.0.0.0/8", "10.0.0.0/8", "::1/128")}


@pytest.fixture
async def acme_env(
    database: Database,
    key_backend: keys.Pkcs8KeyBackend,
    aiohttp_client: AiohttpClient,
    acme_settings: acme_api.AcmeSettings,
    ca_options: dict[str, Any],
) -> AsyncIterator[AcmeEnv]:
    engine = await make_engine(database, key_backend, **ca_options)
    network = FakeNetwork()
    repo = SqlAcmeRepository(database, TEST_SEALER)
    registration = acme_api.AcmeService(engine, repo, ports=network.ports(), settings=acme_settings)
    root = web.Application()
    root.add_subapp("/acme", routes.build_app(registration))
    http = await aiohttp_client(root)
    yield AcmeEnv(http, registration, repo, engine, network, database)
    await registration.orders.wait_idle()


@pytest.fixture
async def acme(acme_env: AcmeEnv) -> AcmeClient:
    """A client with a fresh account."""
    client = acme_env.client()
    reply = await client.new_account(contact=["mailto:ops@example.internal"])
    assert reply.status == 201, reply.body
    return client
