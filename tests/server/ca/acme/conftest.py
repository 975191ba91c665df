"""Fixtures: the ACME engine on in-memory repositories and a fake clock (no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.ca import api, keys
from server.ca.acme import validation
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.types import Principal
from server.store.memory import MemoryAcmeRepository, MemoryRepository
from tests.server.ca.acme.support import FakePorts
from tests.support import FakeClock

OP = Principal("operator", "test")


@pytest.fixture
def acme_repo() -> MemoryAcmeRepository:
    return MemoryAcmeRepository()


@pytest.fixture
async def ca(key_backend: keys.Pkcs8KeyBackend, clock: FakeClock) -> api.CAEngine:
    """An engine with root -> issuing, allowed to name *.internal and 10.0.0.0/8."""
    engine = api.CAEngine(
        MemoryRepository(),
        key_backend,
        settings=api.EngineSettings(default_ca="issuing"),
        clock=clock,
    )
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate(
        "issuing",
        parent="root",
        actor=OP,
        path_length=0,
        dns_suffixes=(".internal",),
        ip_networks=("10.0.0.0/8",),
    )
    return engine


@pytest.fixture
def net() -> FakePorts:
    return FakePorts()


@pytest.fixture
def acme_settings() -> AcmeSettings:
    """Override in a test module to change the ACME policy."""
    return AcmeSettings(
        validation=validation.ValidationSettings(attempts=1, retry_delay=0.0, timeout=2.0)
    )


@pytest.fixture
async def service(
    ca: api.CAEngine,
    acme_repo: MemoryAcmeRepository,
    net: FakePorts,
    acme_settings: AcmeSettings,
    clock: FakeClock,
) -> AsyncIterator[AcmeService]:
    repo: AcmeRepository = acme_repo  # the fake satisfies the port (checked by mypy)
    svc = AcmeService(ca, repo, ports=net.ports(), settings=acme_settings, clock=clock)
    yield svc
    await svc.close()
