"""Recovery of claims a dead process left: stuck challenges and finalizations end once."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.acme import recovery, validation
from server.ca.acme import types as at
from server.ca.acme.ports import FetchResult
from server.ca.acme.recovery import FINALIZE_BOUND, Swept, validation_bound
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.errors import ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.server.ca.acme.support import FakePorts, csr_der, new_account, ready_order
from tests.support import FakeClock

NAME = "a.corp.internal"
SECOND = timedelta(seconds=1)


class KilledError(Exception):
    """The process died here (kill -9 between two steps)."""


def _records(repo: MemoryAcmeRepository) -> list[tuple[str, str, str, dict[str, str]]]:
    return [(e.actor, e.action, e.target, dict(e.detail)) for e in repo.audit]


async def _claimed_challenge(
    service: AcmeService, net: FakePorts, account: at.Account
) -> tuple[at.Order, at.Authorization]:
    """Respond to an order's http-01 challenge (answer in place) and stop the process."""
    order = await service.orders.new_order(account, [("dns", NAME)])
    (authz,) = order.authorizations
    chall = authz.challenge(at.ChallengeType.HTTP_01)
    assert chall is not None
    net.http_answers[chall.token] = validation.key_authorization(
        chall.token, account.key.thumbprint
    )
    await service.orders.respond_challenge(account, authz.id, "http-01")
    # Shutdown cancels the queued validation before it ran, as a kill would.
    await service.orders.close()
    return order, authz


def test_the_validation_bound_covers_a_full_queue() -> None:
    # Defaults: ceil(1000 / 32) = 32 runs of 3 x 10 s + 0.5 s + 1 s, twice over.
    assert validation_bound(AcmeSettings()) == timedelta(seconds=2 * 32 * 31.5)
    quick = validation.ValidationSettings(attempts=1, timeout=1.0)
    assert validation_bound(AcmeSettings(validation=quick)) == timedelta(minutes=10)
    slow = AcmeSettings(validation_queue=100, validation_concurrency=1)
    assert validation_bound(slow) == timedelta(seconds=2 * 100 * 31.5)


async def test_a_stuck_challenge_becomes_invalid_once_its_bound_passes(
    service: AcmeService, net: FakePorts, acme_repo: MemoryAcmeRepository, clock: FakeClock
) -> None:
    account = await new_account(service)
    order, authz = await _claimed_challenge(service, net, account)
    stuck = await service.orders.get_authz(account, authz.id)
    assert stuck.status is at.AuthzStatus.PENDING
    chall = stuck.challenge(at.ChallengeType.HTTP_01)
    assert chall is not None
    assert chall.status is at.ChallengeStatus.PROCESSING
    before = len(acme_repo.audit)

    # A claim younger than the bound may still be running somewhere: left alone.
    clock.advance(service.recovery.validation_bound - SECOND)
    assert await service.recovery.sweep() == Swept()
    assert await service.orders.get_authz(account, authz.id) == stuck

    clock.advance(2 * SECOND)
    assert await service.recovery.sweep() == Swept(authzs_invalid=1)
    failed = await service.orders.get_authz(account, authz.id)
    assert failed.status is at.AuthzStatus.INVALID
    done = failed.challenge(at.ChallengeType.HTTP_01)
    assert done is not None
    assert done.status is at.ChallengeStatus.INVALID
    assert done.error is not None
    assert done.error.kind is ProblemKind.SERVER_INTERNAL
    assert "interrupted" in done.error.detail
    others = [c for c in failed.challenges if c.type is not at.ChallengeType.HTTP_01]
    assert {c.status for c in others} == {at.ChallengeStatus.PENDING}
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.INVALID
    assert authz.id not in acme_repo.validating
    assert _records(acme_repo)[before:] == [
        (
            "system:acme",
            "acme.authz-validate",
            authz.id,
            {
                "identifier": f"dns:{NAME}",
                "challenge": "http-01",
                "result": "invalid",
                "error": "serverInternal",
                "reason": "interrupted",
            },
        )
    ]
    # Ended once; the client's next order gets a fresh authorization.
    assert await service.recovery.sweep() == Swept()
    again = await service.orders.new_order(account, [("dns", NAME)])
    assert [a.status for a in again.authorizations] == [at.AuthzStatus.PENDING]
    assert again.authorizations[0].id != authz.id


async def test_a_validation_ending_after_recovery_changes_nothing(
    service: AcmeService,
    net: FakePorts,
    acme_repo: MemoryAcmeRepository,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    answer = net.fetch

    async def hanging(**request: Any) -> FetchResult:
        # A validation that outlives its bound (a stalled target, a frozen process).
        await release.wait()
        return await answer(**request)

    monkeypatch.setattr(net, "fetch", hanging)
    account = await new_account(service)
    order = await service.orders.new_order(account, [("dns", NAME)])
    (authz,) = order.authorizations
    chall = authz.challenge(at.ChallengeType.HTTP_01)
    assert chall is not None
    net.http_answers[chall.token] = validation.key_authorization(
        chall.token, account.key.thumbprint
    )
    await service.orders.respond_challenge(account, authz.id, "http-01")
    await asyncio.sleep(0)  # the validation is waiting for its answer
    clock.advance(service.recovery.validation_bound + SECOND)
    assert await service.recovery.sweep() == Swept(authzs_invalid=1)
    recorded = len(acme_repo.audit)
    release.set()
    await service.orders.wait_idle()
    # The late success neither revives the authorization nor writes a record.
    assert (await service.orders.get_authz(account, authz.id)).status is at.AuthzStatus.INVALID
    assert len(acme_repo.audit) == recorded


async def test_a_finalize_killed_after_issuing_is_finished_with_its_certificate(
    service: AcmeService,
    net: FakePorts,
    acme_repo: MemoryAcmeRepository,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = await new_account(service)
    order = await ready_order(service, net, account, NAME)
    csr, key = csr_der(NAME)

    async def killed(*_args: Any, **_kwargs: Any) -> bool:
        raise KilledError

    with monkeypatch.context() as patch:
        patch.setattr(acme_repo, "finish_order", killed)
        with pytest.raises(KilledError):
            await service.finalizer.finalize(account, order.id, csr)
    stuck = await service.orders.get_order(account, order.id)
    assert stuck.status is at.OrderStatus.PROCESSING
    assert stuck.cert_ref is None
    # A later order of the same account for the same name, with another key: not its
    # certificate, though it is the newest one naming it.
    clock.advance(SECOND)
    other = await ready_order(service, net, account, NAME)
    decoy = await service.finalizer.finalize(account, other.id, csr_der(NAME)[0])
    before = len(acme_repo.audit)

    clock.advance(FINALIZE_BOUND - 2 * SECOND)
    assert await service.recovery.sweep() == Swept()
    clock.advance(2 * SECOND)
    assert await service.recovery.sweep() == Swept(orders_valid=1)
    done = await service.orders.get_order(account, order.id)
    assert done.status is at.OrderStatus.VALID
    assert done.cert_ref is not None
    assert done.cert_ref != decoy.cert_ref
    leaf, _ = await service.finalizer.certificate_chain(account, done.cert_ref)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert leaf.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NAME]
    assert _records(acme_repo)[before:] == [
        (
            "system:acme",
            "acme.order-valid",
            order.id,
            {"certificate": done.cert_ref, "reason": "interrupted"},
        )
    ]
    assert await service.recovery.sweep() == Swept()


async def test_a_finalize_killed_before_issuing_leaves_an_invalid_order(
    service: AcmeService, net: FakePorts, acme_repo: MemoryAcmeRepository, clock: FakeClock
) -> None:
    account = await new_account(service)
    # An earlier certificate for the same name and key is not this order's.
    csr, key = csr_der(NAME)
    earlier = await ready_order(service, net, account, NAME)
    await service.finalizer.finalize(account, earlier.id, csr)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    clock.advance(SECOND)
    dead = await ready_order(service, net, account, NAME)
    live = await ready_order(service, net, account, NAME)
    # The claim finalize takes, and then nothing: the process died before issuing.
    pending = at.OrderStatus.PENDING
    assert await acme_repo.claim_order(
        dead.id, frm=pending, since=clock.now(), csr_key_sha256=hashlib.sha256(spki).hexdigest()
    )
    clock.advance(FINALIZE_BOUND + SECOND)
    assert await acme_repo.claim_order(
        live.id, frm=pending, since=clock.now(), csr_key_sha256="00" * 32
    )
    before = len(acme_repo.audit)
    assert await service.recovery.sweep() == Swept(orders_invalid=1)
    failed = await service.orders.get_order(account, dead.id)
    assert failed.status is at.OrderStatus.INVALID
    assert failed.error is not None
    assert failed.error.kind is ProblemKind.SERVER_INTERNAL
    assert "interrupted" in failed.error.detail
    assert (await service.orders.get_order(account, live.id)).status is at.OrderStatus.PROCESSING
    assert _records(acme_repo)[before:] == [
        (
            "system:acme",
            "acme.order-invalid",
            dead.id,
            {"error": "serverInternal", "reason": "interrupted"},
        )
    ]


async def test_the_loop_sweeps_again_after_a_failed_round(
    service: AcmeService,
    net: FakePorts,
    acme_repo: MemoryAcmeRepository,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(recovery, "_SWEEP_EVERY", 0.0)
    account = await new_account(service)
    _, authz = await _claimed_challenge(service, net, account)
    clock.advance(service.recovery.validation_bound + SECOND)
    rounds = 0
    stuck_authzs = acme_repo.stuck_authzs

    async def flaky(**query: Any) -> Sequence[at.Authorization]:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("the first round fails")
        return await stuck_authzs(**query)

    monkeypatch.setattr(acme_repo, "stuck_authzs", flaky)
    task = asyncio.create_task(service.recovery.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0)
            if acme_repo.authzs[authz.id].status is at.AuthzStatus.INVALID:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert acme_repo.authzs[authz.id].status is at.AuthzStatus.INVALID
    assert rounds >= 2
    assert "ACME claim recovery failed" in caplog.text
