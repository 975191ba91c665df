"""Fixtures for the revocation front ends: services on each database and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509

from server.app import create_http_app
from server.ca import grants
from server.ca.types import Principal
from server.config import load_settings
from server.store.database import Database
from server.wiring import Services, ensure_first_start, open_services
from tests.support import make_csr

OP: Principal = Principal("operator", "test")
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
OCSP_TYPE = "application/ocsp-request"


@pytest.fixture
def revocation_options() -> dict[str, object]:
    return {"crl_debounce_seconds": 0}


@pytest.fixture
async def services(
    database: Database, tmp_path: Path, revocation_options: dict[str, object]
) -> AsyncIterator[Services]:
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        database_url=database.url,
        revocation=revocation_options,
    )
    async with open_services(settings, create=True) as svc:
        await ensure_first_start(svc)
        yield svc


@pytest.fixture
async def client(services: Services, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(create_http_app(services, maintenance=False))


async def issue(services: Services, ca: str | None = None) -> x509.Certificate:
    csr, _ = make_csr(["dns:leaf.internal"])
    issued = await services.engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca=ca
    )
    return issued.certificate


async def issuing_cert(services: Services) -> x509.Certificate:
    return (await services.engine.get_ca(None)).certificate
