"""The in-memory ACME repository keeps the SQL repository's contract.

Every check runs on ``MemoryAcmeRepository`` and on ``SqlAcmeRepository`` (SQLite,
and PostgreSQL when configured), so engine tests on the fake mean what they say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.ca.acme import types as at
from server.ca.acme.ports import AcmeRepository
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import AuditEvent
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.memory import MemoryAcmeRepository
from tests.support import TEST_SEALER

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = "ab" * 32
Check = Callable[[AcmeRepository], Awaitable[None]]


def _account(name: str, thumbprint: str | None = None) -> at.Account:
    return at.Account(
        id=at.AccountId(f"acct-{name}"),
        status=at.AccountStatus.VALID,
        key=at.AccountKey(jwk="{}", thumbprint=thumbprint or f"t-{name}", spki=b"k"),
        contact=("mailto:a@corp.internal",),
        tos_agreed=True,
        created_at=NOW,
    )


def _authz(name: str, account: at.Account, *, status: at.AuthzStatus) -> at.Authorization:
    return at.Authorization(
        id=at.AuthzId(f"authz-{name}"),
        account_id=account.id,
        identifier=at.Identifier(at.IdentifierType.DNS, "a.corp.internal"),
        status=status,
        expires=NOW + timedelta(days=1),
        challenges=(at.Challenge(at.ChallengeType.HTTP_01, f"tok-{name}"),),
    )


async def _accounts(repo: AcmeRepository) -> None:
    alice = await repo.add_account(_account("alice"))
    assert await repo.add_account(_account("again", thumbprint="t-alice")) == alice
    bob = await repo.add_account(_account("bob"))
    assert await repo.get_account_by_thumbprint("t-bob") == bob
    assert not await repo.update_account(_account("alice", thumbprint="t-bob")), (
        "a key held by another account"
    )
    moved = _account("alice", thumbprint="t-alice-2")
    assert await repo.update_account(moved)
    assert await repo.get_account(alice.id) == moved
    assert await repo.get_account_by_thumbprint("t-alice") is None


async def _orders_and_authzs(repo: AcmeRepository) -> None:
    acct = await repo.add_account(_account("alice"))
    pending = _authz("p", acct, status=at.AuthzStatus.PENDING)
    valid = _authz("v", acct, status=at.AuthzStatus.VALID)
    order = at.Order(
        id=at.OrderId("order-1"),
        account_id=acct.id,
        status=at.OrderStatus.PENDING,
        identifiers=(pending.identifier,),
        authz_ids=(pending.id, valid.id),
        expires=NOW + timedelta(days=1),
        created_at=NOW,
        profile="tls-server",
    )
    await repo.add_order(order, [pending, valid])
    stored = await repo.get_order(order.id)
    assert stored is not None
    assert {a.id for a in stored.authorizations} == {pending.id, valid.id}
    assert await repo.list_order_ids(acct.id, limit=10) == [order.id]
    ready = at.OrderStatus.PENDING  # stored as pending, derived ready
    assert await repo.claim_order(order.id, frm=ready, since=NOW, csr_key_sha256=KEY)
    assert not await repo.claim_order(order.id, frm=ready, since=NOW, csr_key_sha256=KEY)
    assert await repo.finish_order(
        order.id, status=at.OrderStatus.VALID, cert_ref="ca-01", error=None
    )
    assert not await repo.finish_order(
        order.id, status=at.OrderStatus.INVALID, cert_ref=None, error=None
    ), "only a claimed (processing) order is finished"
    done = await repo.get_order(order.id)
    assert done is not None
    assert (done.status, done.cert_ref) == (at.OrderStatus.VALID, "ca-01")
    ident = pending.identifier
    assert await repo.find_valid_authz(acct.id, ident, now=NOW, wildcard=False) == valid
    assert await repo.find_valid_authz(acct.id, ident, now=NOW, wildcard=True) is None
    later = NOW + timedelta(days=2)
    assert await repo.find_valid_authz(acct.id, ident, now=later, wildcard=False) is None
    assert await repo.claim_challenge(pending.id, pending, since=NOW)
    assert not await repo.claim_challenge(pending.id, pending, since=NOW), "already validating"
    assert not await repo.claim_challenge(valid.id, valid, since=NOW), "not pending"
    assert await repo.save_authz(pending, validating_done=True)
    assert await repo.claim_challenge(pending.id, pending, since=NOW)


async def _stuck_claims(repo: AcmeRepository) -> None:
    acct = await repo.add_account(_account("alice"))
    old = _authz("old", acct, status=at.AuthzStatus.PENDING)
    live = _authz("live", acct, status=at.AuthzStatus.PENDING)
    orders = [
        at.Order(
            id=at.OrderId(f"order-{n}"),
            account_id=acct.id,
            status=at.OrderStatus.PENDING,
            identifiers=(old.identifier,),
            authz_ids=(old.id,),
            expires=NOW + timedelta(days=1),
            created_at=NOW,
            profile="tls-server",
        )
        for n in ("old", "live", "idle")
    ]
    await repo.add_order(orders[0], [old, live])
    for order in orders[1:]:
        await repo.add_order(order, [])
    cutoff = NOW + timedelta(minutes=5)
    later = NOW + timedelta(minutes=10)

    assert await repo.claim_challenge(old.id, old, since=NOW)
    assert await repo.claim_challenge(live.id, live, since=later)
    assert [a.id for a in await repo.stuck_authzs(claimed_before=cutoff, limit=10)] == [old.id]
    assert await repo.stuck_authzs(claimed_before=cutoff, limit=0) == []
    failed = replace(old, status=at.AuthzStatus.INVALID)
    assert await repo.save_authz(failed, validating_done=True, claimed=True)
    assert not await repo.save_authz(old, validating_done=True, claimed=True), (
        "a claim ends once: a late result after recovery is dropped"
    )
    assert await repo.get_authz(old.id) == failed
    assert await repo.stuck_authzs(claimed_before=cutoff, limit=10) == []
    assert [
        a.id for a in await repo.stuck_authzs(claimed_before=later + timedelta(1), limit=9)
    ] == [live.id]

    old_order, live_order, idle = orders
    pending = at.OrderStatus.PENDING
    assert await repo.claim_order(old_order.id, frm=pending, since=NOW, csr_key_sha256=KEY)
    assert await repo.claim_order(live_order.id, frm=pending, since=later, csr_key_sha256=KEY)
    stuck = await repo.stuck_orders(claimed_before=cutoff, limit=10)
    assert [(c.order.id, c.since, c.csr_key_sha256) for c in stuck] == [(old_order.id, NOW, KEY)]
    assert stuck[0].order.status is at.OrderStatus.PROCESSING
    assert [a.id for a in stuck[0].order.authorizations] == [old.id]

    async def end(order_id: at.OrderId) -> bool:
        return await repo.finish_order(
            order_id,
            status=at.OrderStatus.INVALID,
            cert_ref=None,
            error=None,
            claimed_before=cutoff,
        )

    assert not await end(live_order.id), "a live claim"
    assert not await end(idle.id), "not claimed"
    assert await end(old_order.id)
    assert not await end(old_order.id), "a claim ends once"
    assert await repo.stuck_orders(claimed_before=cutoff, limit=10) == []
    # Back to ready (a refused CSR) ends the claim's time too.
    assert await repo.finish_order(live_order.id, status=pending, cert_ref=None, error=None)
    assert await repo.stuck_orders(claimed_before=later + timedelta(1), limit=10) == []


async def _nonces_and_limits(repo: AcmeRepository) -> None:
    soon, later = NOW + timedelta(minutes=1), NOW + timedelta(hours=1)
    assert await repo.consume_nonces([("a", soon), ("b", later)]) == {"a", "b"}
    assert await repo.consume_nonces([("a", soon), ("c", later)]) == {"c"}
    assert await repo.purge_nonces(before=NOW + timedelta(minutes=2)) == 1
    assert await repo.consume_nonces([("a", soon)]) == {"a"}
    assert await repo.nonce_secret(b"first") == b"first"
    assert await repo.nonce_secret(b"second") == b"first"
    hour, next_hour = NOW, NOW + timedelta(hours=1)
    assert [await repo.hit_rate_limit("k", window_start=hour, limit=2) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert await repo.hit_rate_limit("other", window_start=hour, limit=2)
    assert await repo.hit_rate_limit("k", window_start=next_hour, limit=2)


def _audit(action: str, kid: str) -> AuditEvent:
    return AuditEvent(at=NOW, actor="operator:test", action=action, target=kid)


def _eab_account(name: str, kid: str) -> at.Account:
    return at.Account(
        id=at.AccountId(f"acct-{name}"),
        status=at.AccountStatus.VALID,
        key=at.AccountKey(jwk="{}", thumbprint=f"t-{name}", spki=b""),
        contact=(),
        tos_agreed=False,
        created_at=NOW,
        eab_kid=kid,
    )


async def _eab_keys(repo: AcmeRepository) -> None:
    first = at.EabKey(kid="kid-1", hmac_key=b"1" * 32, created_at=NOW)
    second = at.EabKey(kid="kid-2", hmac_key=b"2" * 32, created_at=NOW + timedelta(seconds=1))
    await repo.add_eab_key(second, audit=_audit("acme.eab-create", "kid-2"))
    await repo.add_eab_key(first, audit=_audit("acme.eab-create", "kid-1"))
    bind = _audit("acme.eab-bind", "kid-1")
    bound = await repo.add_eab_account(_eab_account("a", "kid-1"), single_use=True, audit=bind)
    # Single use: a second account cannot bind the key, a raced same key gets the first.
    with pytest.raises(EngineError) as used:
        await repo.add_eab_account(_eab_account("b", "kid-1"), single_use=True, audit=bind)
    assert used.value.kind is ProblemKind.UNAUTHORIZED
    assert await repo.get_account(at.AccountId("acct-b")) is None
    same_key = replace(_eab_account("a", "kid-2"), id=at.AccountId("acct-a2"))
    assert await repo.add_eab_account(same_key, single_use=True, audit=bind) == bound
    # Reuse: every bound account is recorded.
    also = await repo.add_eab_account(_eab_account("c", "kid-1"), single_use=False, audit=bind)
    assert await repo.get_eab_key("kid-1") == first
    assert (
        await repo.revoke_eab_key(
            "kid-2", deactivate_accounts=True, audit=_audit("acme.eab-revoke", "kid-2")
        )
        == []
    )
    assert (
        await repo.revoke_eab_key(
            "kid-3", deactivate_accounts=False, audit=_audit("acme.eab-revoke", "kid-3")
        )
        is None
    )
    listed = await repo.list_eab_keys()
    assert [(k.kid, k.revoked, k.account_ids) for k in listed] == [
        ("kid-1", False, (bound.id, also.id)),
        ("kid-2", True, ()),
    ]
    # A revoked key binds nothing, reuse or not.
    with pytest.raises(EngineError):
        await repo.add_eab_account(_eab_account("d", "kid-2"), single_use=False, audit=bind)
    done = await repo.revoke_eab_key(
        "kid-1", deactivate_accounts=True, audit=_audit("acme.eab-revoke", "kid-1")
    )
    assert done == [bound.id, also.id]
    for account_id in done:
        account = await repo.get_account(account_id)
        assert account is not None
        assert account.status is at.AccountStatus.DEACTIVATED


CHECKS = [
    pytest.param(_accounts, id="accounts"),
    pytest.param(_orders_and_authzs, id="orders"),
    pytest.param(_stuck_claims, id="stuck-claims"),
    pytest.param(_nonces_and_limits, id="nonces-limits"),
    pytest.param(_eab_keys, id="eab"),
]


@pytest.mark.parametrize("check", CHECKS)
async def test_memory_fake(check: Check) -> None:
    await check(MemoryAcmeRepository())


@pytest.mark.parametrize("check", CHECKS)
async def test_sql_reference(check: Check, database: Database) -> None:
    await check(SqlAcmeRepository(database, TEST_SEALER))
