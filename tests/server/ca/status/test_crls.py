"""CRL publication: debounce, schedule, many revocations, revoked intermediates, leader lock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import keys
from server.ca.status.ports import RevokedEntry
from server.ca.types import CAId, CertificateRecord, CertStatus, RevocationReason, Serial
from tests.server.ca.status.test_responder import OP, Env
from tests.support import openssl_verify


@pytest.fixture
def env(key_backend: keys.Pkcs8KeyBackend) -> Env:
    return Env(key_backend)


async def test_first_request_generates_then_debounced_regeneration(env: Env) -> None:
    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    first = await env.status.crl(ca.id)
    assert first.number == 1
    leaf = await env.leaf()
    await env.engine.revoke(
        leaf.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    assert await env.store.dirty_crls()
    # within the debounce nothing happens: revocations in a burst share one CRL
    assert ca.id not in await env.status.crls.tick()
    env.clock.advance(timedelta(seconds=3))
    assert ca.id in await env.status.crls.tick()
    assert not await env.store.dirty_crls()
    latest = await env.repo.latest_crl(ca.id)
    assert latest is not None
    assert latest.number == 2
    crl = x509.load_der_x509_crl(latest.der)
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    # RFC 5280 §5.2.1: the CRL's AKI names the issuer's key.
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    issuer_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert (aki.critical, aki.value.key_identifier) == (False, issuer_ski.value.digest)
    assert [c.number for c in env.repo.crls if c.ca_id == ca.id] == [1, 2]  # previous ones kept


async def test_scheduled_regeneration_before_next_update(env: Env) -> None:
    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    await env.status.crl(ca.id)
    env.clock.advance(timedelta(hours=11))
    assert ca.id not in await env.status.crls.tick()
    env.clock.advance(timedelta(hours=1, seconds=1))
    assert ca.id in await env.status.crls.tick()
    latest = await env.repo.latest_crl(ca.id)
    assert latest is not None
    assert latest.next_update - env.clock.now() > timedelta(hours=23)


async def test_crl_after_many_revocations(env: Env) -> None:
    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    now = env.clock.now()
    reasons = list(RevocationReason)
    for i in range(3000):
        reason = reasons[i % len(reasons)]
        if reason is RevocationReason.REMOVE_FROM_CRL:
            reason = RevocationReason.SUPERSEDED
        env.repo.certs[(ca.id, 10_000 + i)] = CertificateRecord(
            ca_id=ca.id,
            serial=Serial(10_000 + i),
            der=b"",
            profile="tls-server",
            subject="",
            sans=(),
            not_before=now,
            not_after=now + timedelta(days=1),
            issued_at=now,
            requester="test",
            status=CertStatus.REVOKED,
            revoked_at=now,
            revocation_reason=reason,
        )
    record = await env.status.crls.regenerate(ca)
    assert record is not None
    crl = x509.load_der_x509_crl(record.der)
    assert len(crl) == 3000
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    one = crl.get_revoked_certificate_by_serial_number(10_001)
    assert one is not None
    assert one.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    unspecified = crl.get_revoked_certificate_by_serial_number(10_000)
    assert unspecified is not None
    assert len(unspecified.extensions) == 0


async def test_revoked_intermediate_on_parent_crl_invalidates_leaves(
    key_backend: keys.Pkcs8KeyBackend,
) -> None:
    env = Env(key_backend, real_clock=True)  # openssl checks validity against now
    await env.hierarchy()
    leaf = await env.leaf()
    root_ca = await env.engine.get_ca("root")
    issuing_ca = await env.engine.get_ca("issuing")
    chain = (issuing_ca.certificate, root_ca.certificate)
    crls = [(await env.status.crl(c.id)).der for c in (root_ca, issuing_ca)]
    ok = openssl_verify(leaf, chain, extra=["-crl_check_all"], crls=crls)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    await env.engine.revoke(
        issuing_ca.certificate.serial_number,
        principal=OP,
        ca="root",
        reason=RevocationReason.CA_COMPROMISE,
    )
    record = await env.status.crls.regenerate(root_ca)
    assert record is not None
    crls = [record.der, (await env.status.crl(issuing_ca.id)).der]
    bad = openssl_verify(leaf, chain, extra=["-crl_check_all"], crls=crls)
    assert bad.returncode != 0
    assert b"certificate revoked" in bad.stdout + bad.stderr


async def test_only_one_regeneration_at_a_time(env: Env) -> None:
    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    results = await asyncio.gather(*(env.status.crls.regenerate(ca) for _ in range(3)))
    made = [r for r in results if r is not None]
    assert len(made) >= 1
    numbers = sorted(r.number for r in made)
    assert len(set(numbers)) == len(numbers)


async def test_unknown_ca_has_no_crl(env: Env) -> None:
    from server.ca.errors import EngineError, ProblemKind

    await env.hierarchy()
    with pytest.raises(EngineError) as err:
        await env.status.crl("nope")
    assert err.value.kind is ProblemKind.NOT_FOUND
    ca = await env.engine.get_ca("issuing")
    with pytest.raises(EngineError):
        await env.status.crl(ca.name)  # by id only, as the CDP URL names it
    der = await env.status.ca_certificate(ca.id)
    assert der == ca.certificate.public_bytes(serialization.Encoding.DER)


async def test_regeneration_reads_only_new_revocations(env: Env) -> None:
    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    first, second = await env.leaf(), await env.leaf()
    await env.engine.revoke(first.serial_number, principal=OP)
    calls: list[object] = []
    original = env.store.list_revocations

    async def spy(ca_id: CAId, *, since: datetime | None = None) -> Sequence[RevokedEntry]:
        calls.append(since)
        return await original(ca_id, since=since)

    env.store.list_revocations = spy  # type: ignore[method-assign]
    one = await env.status.crls.regenerate(ca)
    env.clock.advance(timedelta(minutes=10))
    await env.engine.revoke(second.serial_number, principal=OP, reason=RevocationReason.SUPERSEDED)
    two = await env.status.crls.regenerate(ca)
    assert one is not None
    assert two is not None
    assert calls[0] is None  # the first run reads everything
    assert calls[1] == env.clock.now() - timedelta(minutes=10) - timedelta(minutes=2)
    crl = x509.load_der_x509_crl(two.der)
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    assert two.number == one.number + 1


async def test_every_node_serves_the_newest_crl(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.ca.status import api as status_api
    from server.ca.status import crls

    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    other = status_api.StatusService(env.engine, env.repo, env.store, clock=env.clock)
    monkeypatch.setattr(crls, "_CACHE_SECONDS", 0.0)
    first = await other.crl(ca.id)  # nothing yet: the other node makes CRL 1
    assert first.number == 1
    made = await env.status.crls.regenerate(ca)  # this node makes CRL 2
    assert made is not None
    assert made.number == 2
    assert (await other.crl(ca.id)).number == 2
    assert (await env.status.crl(ca.id)).der == made.der
    assert await env.store.latest_crl_info(ca.id) == (2, made.this_update)


async def test_a_node_whose_tick_saw_the_ca_dirty_skips_it_once_another_node_regenerated(
    env: Env,
) -> None:
    from typing import Any, cast

    from server.ca.status import crls
    from server.ca.status import ports as status_ports

    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    await env.status.crl(ca.id)  # CRL 1
    leaf = await env.leaf()
    await env.engine.revoke(leaf.serial_number, principal=OP, reason=RevocationReason.SUPERSEDED)
    env.clock.advance(timedelta(seconds=3))

    class LateNode:
        """Node B's view of the store: node A's tick runs between B reading the dirty marks
        and B taking the leader lock (A regenerates, clears the mark, releases the lock)."""

        async def dirty_crls(self) -> Sequence[tuple[CAId, datetime]]:
            marks = await env.store.dirty_crls()
            assert ca.id in await env.status.crls.tick()  # node A
            return marks

        def __getattr__(self, name: str) -> Any:
            return getattr(env.store, name)

    late = crls.CrlPublisher(
        env.engine, env.repo, cast(status_ports.StatusRepository, LateNode()), clock=env.clock
    )
    assert await late.tick() == []
    # One revocation, one new CRL across both nodes.
    assert [c.number for c in env.repo.crls if c.ca_id == ca.id] == [1, 2]
    # Negative control: a revocation after A's CRL is still regenerated by B.
    again = await env.leaf()
    await env.engine.revoke(again.serial_number, principal=OP, reason=RevocationReason.SUPERSEDED)
    env.clock.advance(timedelta(seconds=3))
    plain = crls.CrlPublisher(env.engine, env.repo, env.store, clock=env.clock)
    assert await plain.tick() == [ca.id]
    assert [c.number for c in env.repo.crls if c.ca_id == ca.id] == [1, 2, 3]


async def test_a_request_waits_for_the_crl_another_holder_is_making(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.ca.errors import EngineError, ProblemKind
    from server.ca.status import api as status_api
    from server.ca.status import crls

    await env.hierarchy()
    ca = await env.engine.get_ca("issuing")
    other = status_api.StatusService(env.engine, env.repo, env.store, clock=env.clock)
    async with env.store.leader(f"crl:{ca.id}") as leader:
        assert leader  # "another node" is making the first CRL
        waiting = asyncio.create_task(env.status.crl(ca.id))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        made = await other.crls._regenerate_as_leader(ca, actor="system:crl", validity=None)
    assert (await waiting).der == made.der
    # Nobody finishing within the wait: "being generated", with Retry-After.
    monkeypatch.setattr(crls, "_WAIT_FOR_OTHER_S", 0.2)
    sub = await env.engine.get_ca("root")
    async with env.store.leader(f"crl:{sub.id}"):
        with pytest.raises(EngineError) as err:
            await env.status.crl(sub.id)
    assert (err.value.kind, err.value.retry_after) == (ProblemKind.UNAVAILABLE, 2)
