"""The HTTPS app's background work: the main process recovers ACME claims, workers do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_https_app
from server.config import load_settings
from server.store.database import Database
from server.wiring import Services, ensure_first_start, open_services

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def services(database: Database, tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=database.url)
    async with open_services(settings, create=True) as svc:
        await ensure_first_start(svc)
        yield svc


@pytest.mark.parametrize("maintenance", [True, False], ids=["main-process", "worker"])
async def test_only_the_main_process_sweeps_acme_claims(
    services: Services, aiohttp_client: ClientFactory, maintenance: bool
) -> None:
    await aiohttp_client(create_https_app(services, maintenance=maintenance))
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert ("acme-recovery" in names) is maintenance
