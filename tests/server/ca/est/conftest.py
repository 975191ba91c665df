"""EST engine fixtures: ``EstService`` on the in-memory engine and EST repositories."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.ca import api
from server.ca.est import api as est_api
from server.ca.types import Principal
from server.store.est_memory import MemoryEstRepository
from tests.support import FakeClock

OP = Principal("operator", "test")


@pytest.fixture
def est_repo() -> MemoryEstRepository:
    return MemoryEstRepository()


@pytest.fixture
def est_clock() -> FakeClock:
    """The EST service's clock, starting now so freshly issued certificates are valid."""
    return FakeClock(datetime.now(UTC))


@pytest.fixture
async def service(
    engine: api.CAEngine, est_repo: MemoryEstRepository, est_clock: FakeClock
) -> est_api.EstService:
    """An EST service with a root and an "issuing" CA, on memory storage (no database)."""
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP)
    return est_api.EstService(engine, est_repo, clock=est_clock)
