"""Replay nonces (RFC 8555 §6.5): single use, MAC, expiry, batched recording."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from server.ca.acme.nonces import NonceService
from server.ca.acme.ports import AcmeRepository
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.support import FakeClock


class BatchCountingRepo(MemoryAcmeRepository):
    """The in-memory repository, recording each batch and yielding like a round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def consume_nonces(self, nonces: Sequence[tuple[str, datetime]]) -> set[str]:
        self.batches.append(len(nonces))
        await asyncio.sleep(0)
        return await super().consume_nonces(nonces)


def nonce_service(repo: AcmeRepository, clock: FakeClock) -> NonceService:
    return NonceService(repo, clock, lifetime=timedelta(hours=1))


async def test_nonce_is_single_use() -> None:
    repo, clock = MemoryAcmeRepository(), FakeClock()
    svc = nonce_service(repo, clock)
    nonce = await svc.issue()
    await svc.consume(nonce)
    with pytest.raises(EngineError) as err:
        await svc.consume(nonce)
    assert err.value.kind is ProblemKind.BAD_NONCE


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda n: n[:-2] + ("AA" if not n.endswith("AA") else "BB"), id="fail/forged-mac"
        ),
        pytest.param(lambda n: n + "x", id="fail/wrong-length"),
        pytest.param(lambda n: "!" * len(n), id="fail/not-base64url"),
        pytest.param(lambda n: "", id="fail/empty"),
    ],
)
async def test_bad_nonces_are_refused(mutate: object) -> None:
    repo, clock = MemoryAcmeRepository(), FakeClock()
    svc = nonce_service(repo, clock)
    nonce = await svc.issue()
    with pytest.raises(EngineError) as err:
        await svc.consume(mutate(nonce))  # type: ignore[operator]
    assert err.value.kind is ProblemKind.BAD_NONCE
    assert repo.used_nonces == {}


async def test_nonce_expires_and_other_key_is_refused() -> None:
    repo, clock = MemoryAcmeRepository(), FakeClock()
    svc = nonce_service(repo, clock)
    nonce = await svc.issue()
    clock.advance(timedelta(hours=1, seconds=1))
    with pytest.raises(EngineError, match="expired"):
        await svc.consume(nonce)
    other = nonce_service(MemoryAcmeRepository(), clock)
    with pytest.raises(EngineError, match="not issued"):
        await other.consume(await svc.issue())


async def test_concurrent_nonces_share_batches_and_duplicates_lose() -> None:
    repo, clock = BatchCountingRepo(), FakeClock()
    svc = nonce_service(repo, clock)
    nonces = [await svc.issue() for _ in range(20)]
    results = await asyncio.gather(
        *(svc.consume(n) for n in [*nonces, nonces[0]]), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, EngineError)]
    assert len(errors) == 1
    assert len(repo.used_nonces) == 20
    assert len(repo.batches) < 21
