"""Claims a killed process left (challenge processing, order processing) are recovered.

On SQLite and PostgreSQL: the crash is the claim without its end, the sweep runs
with a clock past the bound, and every node may sweep at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import api, keys
from server.ca.acme import types as at
from server.ca.acme.recovery import FINALIZE_BOUND, Recovery, Swept
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient, b64u, csr_der
from tests.protocols.acme.test_flow import authorize
from tests.support import TEST_SEALER, AuditTrail, FakeClock

MINUTE = timedelta(minutes=1)


class KilledError(Exception):
    """The process died here."""


def _recovery(env: AcmeEnv, *, after: timedelta) -> Recovery:
    """The sweep as it runs ``after`` from now (the service itself keeps the real clock)."""
    clock = FakeClock(datetime.now(UTC) + after)
    return Recovery(env.engine, env.repo, settings=env.registration.settings, clock=clock)


async def _claim_challenge(env: AcmeEnv, authz_url: str) -> at.AuthzId:
    """Take the claim a challenge POST takes, and nothing else (the process died)."""
    authz_id = at.AuthzId(authz_url.rsplit("/", 1)[1])
    authz = await env.repo.get_authz(authz_id)
    assert authz is not None
    started = tuple(
        replace(c, status=at.ChallengeStatus.PROCESSING)
        if c.type is at.ChallengeType.HTTP_01
        else c
        for c in authz.challenges
    )
    claimed = replace(authz, challenges=started)
    assert await env.repo.claim_challenge(authz_id, claimed, since=datetime.now(UTC))
    return authz_id


async def test_a_stuck_challenge_ends_invalid_with_a_record(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    bound = acme_env.registration.recovery.validation_bound
    reply = await acme.new_order("stuck.internal")
    (url,) = reply.json()["authorizations"]
    authz_id = await _claim_challenge(acme_env, url)
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    assert (await acme.get(url)).json()["challenges"][0]["status"] == "processing"

    assert await _recovery(acme_env, after=bound - MINUTE).sweep() == Swept()
    assert (await acme.get(url)).json()["status"] == "pending"
    assert await trail.new() == []

    assert await _recovery(acme_env, after=bound + MINUTE).sweep() == Swept(authzs_invalid=1)
    authz = (await acme.get(url)).json()
    assert authz["status"] == "invalid"
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert chall["status"] == "invalid"
    assert chall["error"]["type"] == "urn:ietf:params:acme:error:serverInternal"
    # The wire hides serverInternal details; the stored problem says what happened.
    stored = await acme_env.repo.get_authz(authz_id)
    assert stored is not None
    error = stored.challenges[0].error
    assert error is not None
    assert "interrupted" in error.detail
    assert (await acme.get(reply.headers["Location"])).json()["status"] == "invalid"
    assert await trail.new() == [("system:acme", "acme.authz-validate", authz_id, "")]
    assert trail.details == [
        {
            "identifier": "dns:stuck.internal",
            "challenge": "http-01",
            "result": "invalid",
            "error": "serverInternal",
            "reason": "interrupted",
        }
    ]
    # Once: a second sweep (or node) finds nothing.
    assert await _recovery(acme_env, after=bound + MINUTE).sweep() == Swept()
    assert await trail.new() == []
    assert (await acme_env.engine.verify_audit()).broken is None


async def test_a_finalize_killed_after_issuing_ends_valid_with_its_certificate(
    acme_env: AcmeEnv, acme: AcmeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await acme.new_order("killed.internal")
    order = reply.json()
    order_url = reply.headers["Location"]
    order_id = order_url.rsplit("/", 1)[1]
    await authorize(acme_env, acme, order)
    csr, key = csr_der(["killed.internal"])

    async def killed(*_args: Any, **_kwargs: Any) -> bool:
        raise KilledError

    with monkeypatch.context() as patch:
        patch.setattr(acme_env.repo, "finish_order", killed)
        assert (await acme.post(order["finalize"], {"csr": b64u(csr)})).status == 500
    assert (await acme.get(order_url)).json()["status"] == "processing"
    trail = AuditTrail(acme_env.engine)
    await trail.new()

    assert await _recovery(acme_env, after=FINALIZE_BOUND - MINUTE).sweep() == Swept()
    assert await _recovery(acme_env, after=FINALIZE_BOUND + MINUTE).sweep() == Swept(orders_valid=1)
    done = (await acme.get(order_url)).json()
    assert done["status"] == "valid"
    pem = (await acme.get(done["certificate"])).body
    leaf = x509.load_pem_x509_certificates(pem)[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert leaf.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    ref = done["certificate"].rsplit("/", 1)[1]
    assert await trail.new() == [("system:acme", "acme.order-valid", order_id, "")]
    assert trail.details == [{"certificate": ref, "reason": "interrupted"}]
    assert (await acme_env.engine.verify_audit()).broken is None


async def test_a_finalize_killed_before_issuing_ends_invalid(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    reply = await acme.new_order("early.internal")
    order_url = reply.headers["Location"]
    order_id = at.OrderId(order_url.rsplit("/", 1)[1])
    await authorize(acme_env, acme, reply.json())
    assert await acme_env.repo.claim_order(
        order_id, frm=at.OrderStatus.PENDING, since=datetime.now(UTC), csr_key_sha256="00" * 32
    )
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    assert await _recovery(acme_env, after=FINALIZE_BOUND + MINUTE).sweep() == Swept(
        orders_invalid=1
    )
    failed = (await acme.get(order_url)).json()
    assert failed["status"] == "invalid"
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:serverInternal"
    stored = await acme_env.repo.get_order(order_id)
    assert stored is not None
    assert stored.error is not None
    assert "interrupted" in stored.error.detail
    assert await trail.new() == [("system:acme", "acme.order-invalid", order_id, "")]
    assert trail.details == [{"error": "serverInternal", "reason": "interrupted"}]


async def test_two_nodes_sweeping_at_once_end_each_claim_once(
    acme_env: AcmeEnv, acme: AcmeClient, key_backend: keys.Pkcs8KeyBackend
) -> None:
    authzs, orders = [], []
    for n in range(3):
        reply = await acme.new_order(f"race{n}.internal")
        authzs.append(await _claim_challenge(acme_env, reply.json()["authorizations"][0]))
        reply = await acme.new_order(f"fin{n}.internal")
        await authorize(acme_env, acme, reply.json())
        order_id = at.OrderId(reply.headers["Location"].rsplit("/", 1)[1])
        assert await acme_env.repo.claim_order(
            order_id, frm=at.OrderStatus.PENDING, since=datetime.now(UTC), csr_key_sha256="0" * 64
        )
        orders.append(order_id)
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    # A second node: its own pool, engine and repository on the same database.
    other_db = Database(acme_env.db.url)
    try:
        engine = api.CAEngine(
            SqlRepository(other_db), key_backend, settings=api.EngineSettings(default_ca="issuing")
        )
        after = acme_env.registration.recovery.validation_bound + MINUTE
        other = Recovery(
            engine,
            SqlAcmeRepository(other_db, TEST_SEALER),
            settings=acme_env.registration.settings,
            clock=FakeClock(datetime.now(UTC) + after),
        )
        swept = await asyncio.gather(
            _recovery(acme_env, after=after).sweep(),
            other.sweep(),
            _recovery(acme_env, after=after).sweep(),
        )
    finally:
        await other_db.close()
    assert sum(s.authzs_invalid for s in swept) == len(authzs)
    assert sum(s.orders_invalid for s in swept) == len(orders)
    records = await trail.new()
    assert sorted(r[2] for r in records) == sorted([*authzs, *orders])
    assert {r[0] for r in records} == {"system:acme"}
    assert (await acme_env.engine.verify_audit()).broken is None
