"""ACME engine pieces without HTTP: nonces, validation, registration edge cases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from server.ca.acme import api as acme_api
from server.ca.acme import validation
from server.ca.acme.nonces import NonceService
from server.ca.acme.types import Identifier, IdentifierType
from server.ca.errors import EngineError, ProblemKind
from tests.support import FakeClock


class NonceRepo:
    """The nonce part of the ACME repository, in memory."""

    def __init__(self) -> None:
        self.used: dict[str, datetime] = {}
        self.batches: list[int] = []
        self.secret: bytes | None = None

    async def consume_nonces(self, nonces: Sequence[tuple[str, datetime]]) -> set[str]:
        self.batches.append(len(nonces))
        await asyncio.sleep(0)
        fresh = {n for n, _ in nonces if n not in self.used}
        self.used.update(dict(nonces))
        return fresh

    async def purge_nonces(self, *, before: datetime) -> int:
        old = [n for n, e in self.used.items() if e < before]
        for n in old:
            del self.used[n]
        return len(old)

    async def nonce_secret(self, candidate: bytes) -> bytes:
        self.secret = self.secret or candidate
        return self.secret


def nonce_service(repo: NonceRepo, clock: FakeClock) -> NonceService:
    return NonceService(repo, clock, lifetime=timedelta(hours=1))  # type: ignore[arg-type]


async def test_nonce_is_single_use() -> None:
    repo, clock = NonceRepo(), FakeClock()
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
    repo, clock = NonceRepo(), FakeClock()
    svc = nonce_service(repo, clock)
    nonce = await svc.issue()
    with pytest.raises(EngineError) as err:
        await svc.consume(mutate(nonce))  # type: ignore[operator]
    assert err.value.kind is ProblemKind.BAD_NONCE
    assert repo.used == {}


async def test_nonce_expires_and_other_key_is_refused() -> None:
    repo, clock = NonceRepo(), FakeClock()
    svc = nonce_service(repo, clock)
    nonce = await svc.issue()
    clock.advance(timedelta(hours=1, seconds=1))
    with pytest.raises(EngineError, match="expired"):
        await svc.consume(nonce)
    other = nonce_service(NonceRepo(), clock)
    with pytest.raises(EngineError, match="not issued"):
        await other.consume(await svc.issue())


async def test_concurrent_nonces_share_batches_and_duplicates_lose() -> None:
    repo, clock = NonceRepo(), FakeClock()
    svc = nonce_service(repo, clock)
    nonces = [await svc.issue() for _ in range(20)]
    results = await asyncio.gather(
        *(svc.consume(n) for n in [*nonces, nonces[0]]), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, EngineError)]
    assert len(errors) == 1
    assert len(repo.used) == 20
    assert len(repo.batches) < 21


def ident(value: str) -> Identifier:
    return Identifier(IdentifierType.DNS, value)


def test_dns01_names_and_values() -> None:
    assert validation.dns01_name(ident("*.a.internal")) == "_acme-challenge.a.internal"
    # RFC 8555 §8.4 example shape: 43 base64url characters of SHA-256.
    value = validation.dns01_value("token.thumb")
    assert len(value) == 43
    assert "=" not in value


class Net:
    def __init__(self, body: bytes = b"", status: int = 200, fail: int = 0) -> None:
        self.body, self.status, self.fail, self.calls = body, status, fail, 0

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        self.calls += 1
        if self.calls <= self.fail:
            raise acme_api.NetworkError("connection", "refused")
        return acme_api.FetchResult(self.status, self.body)

    async def txt(self, name: str) -> Sequence[str]:
        raise acme_api.NetworkError("dns", "SERVFAIL")

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        await asyncio.sleep(10)
        return b""


def ports(net: Net) -> acme_api.ValidationPorts:
    return acme_api.ValidationPorts(http=net, dns=net, tls=net)


async def test_http01_retries_then_succeeds() -> None:
    net = Net(body=b"tok.thumb\n", fail=2)
    settings = validation.ValidationSettings(attempts=3, retry_delay=0)
    problem = await validation.validate(
        acme_api.ChallengeType.HTTP_01,
        ident("a.internal"),
        token="tok",
        thumbprint="thumb",
        ports=ports(net),
        settings=settings,
    )
    assert problem is None
    assert net.calls == 3


async def test_attempts_are_bounded_and_errors_typed() -> None:
    net = Net(fail=99)
    settings = validation.ValidationSettings(attempts=2, retry_delay=0, timeout=0.05)
    problem = await validation.validate(
        acme_api.ChallengeType.HTTP_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert problem is not None
    assert problem.kind is ProblemKind.CONNECTION
    assert net.calls == 2
    dns = await validation.validate(
        acme_api.ChallengeType.DNS_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert dns is not None
    assert dns.kind is ProblemKind.DNS
    slow = await validation.validate(
        acme_api.ChallengeType.TLS_ALPN_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert slow is not None
    assert "no answer" in slow.detail


def test_alpn_certificate_without_san_is_refused() -> None:
    assert validation.check_alpn_certificate(b"junk", ident("a.internal"), "k") is not None
