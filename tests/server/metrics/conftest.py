"""Metrics fixtures: services on each database with this process's metrics hooked in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509

from server.ca import grants
from server.ca.types import CertificateRecord, Principal
from server.config import load_settings
from server.metrics.runtime import ProcessMetrics
from server.store.database import Database
from server.wiring import Services, ensure_first_start, open_services
from tests.support import make_csr

OP = Principal("operator", "test")
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def services(database: Database, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        database_url=database.url,
        revocation={"crl_debounce_seconds": 0},
        metrics={"port": 0},
    )
    async with open_services(settings, create=True) as svc:
        await ensure_first_start(svc)
        yield svc


@pytest.fixture
def metrics(services: Services) -> ProcessMetrics:
    return ProcessMetrics(services)


def sample(metrics: ProcessMetrics, name: str, **labels: str) -> float:
    """Return a sample's value in this process's registry (0 when the series does not exist)."""
    assert metrics.registry is not None
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def issue(
    services: Services, *, days: int | None = None, name: str = "leaf.internal"
) -> tuple[x509.Certificate, CertificateRecord]:
    csr, _ = make_csr([f"dns:{name}"])
    issued = await services.engine.issue(
        csr,
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        lifetime=None if days is None else timedelta(days=days),
    )
    return issued.certificate, issued.record
