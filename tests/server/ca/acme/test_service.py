"""AcmeService: the composition the front end holds (authentication surface, shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from server.ca import api
from server.ca.acme import types as at
from server.ca.acme.ports import FetchResult
from server.ca.acme.service import AcmeService
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.server.ca.acme.support import FakePorts, new_account
from tests.support import FakeClock


class HangingPorts(FakePorts):
    """http-01 fetches that never answer until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> FetchResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_nonces_and_accounts_for_the_jws_check(service: AcmeService) -> None:
    account = await new_account(service)
    assert await service.account(account.id) == account
    nonce = await service.new_nonce()
    await service.use_nonce(nonce)
    with pytest.raises(EngineError) as err:
        await service.use_nonce(nonce)
    assert err.value.kind is ProblemKind.BAD_NONCE


async def test_close_cancels_validation_in_flight(
    ca: api.CAEngine, acme_repo: MemoryAcmeRepository, clock: FakeClock
) -> None:
    net = HangingPorts()
    svc = AcmeService(ca, acme_repo, ports=net.ports(), clock=clock)
    account = await new_account(svc)
    order = await svc.orders.new_order(account, [("dns", "a.corp.internal")])
    await svc.orders.respond_challenge(account, order.authz_ids[0], "http-01")
    await asyncio.wait_for(net.started.wait(), timeout=5)
    await asyncio.wait_for(svc.close(), timeout=5)
    await svc.orders.wait_idle()
    authz = await svc.orders.get_authz(account, order.authz_ids[0])
    # Cancelled, not failed: the challenge is left processing for another node to retry.
    assert authz.status is at.AuthzStatus.PENDING
    assert set(acme_repo.validating) == {authz.id}
