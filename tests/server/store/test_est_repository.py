"""The EST repository contract, on the in-memory fake and on SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est.ports import EstRepository, LoginBudget
from server.ca.types import AuditEvent, CAId, Serial
from server.store.database import Database
from server.store.est_memory import MemoryEstRepository
from server.store.est_repository import SqlEstRepository

A1 = est_api.PendingId("a1")


async def _pending_transitions(repo: EstRepository) -> None:
    now = datetime.now(UTC)
    base = est_api.PendingEnrollment(
        id=A1,
        label="default",
        operation=est_api.EstOperation.SERVERKEYGEN,
        requester="est-cert:default/CN=x#01",
        key_fingerprint="cd" * 32,
        subject="CN=x",
        csr_der=b"\x30\x03\x02\x01\x00",
        status=est_api.PendingStatus.PENDING,
        created_at=now,
    )
    await repo.add_pending(base)
    newer = est_api.PendingEnrollment(
        **{
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "id": est_api.PendingId("a2"),
            "created_at": now + timedelta(seconds=5),
        }
    )
    await repo.add_pending(newer)
    found = await repo.find_pending("default", base.requester, base.key_fingerprint)
    assert found is not None
    assert found.id == "a2"
    assert found.operation is est_api.EstOperation.SERVERKEYGEN
    assert await repo.find_pending("default", "someone-else", base.key_fingerprint) is None
    pending, approved, issuing, issued = (
        est_api.PendingStatus.PENDING,
        est_api.PendingStatus.APPROVED,
        est_api.PendingStatus.ISSUING,
        est_api.PendingStatus.ISSUED,
    )
    # Only the expected current status moves: a second claimant loses.
    assert not await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert await repo.transition_pending(
        A1, from_status=pending, to_status=approved, at=now, by="op"
    )
    assert await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert not await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert await repo.transition_pending(
        A1,
        from_status=issuing,
        to_status=issued,
        at=now,
        ca_id=CAId("abc"),
        serial=Serial(0xDEADBEEF),
    )
    got = await repo.get_pending(A1)
    assert got is not None
    assert got.status is issued
    assert got.serial == 0xDEADBEEF
    assert got.ca_id == "abc"
    assert got.decided_by == "op"
    assert got.decided_at == now
    assert [p.id for p in await repo.list_pending(pending)] == ["a2"]
    assert [p.id for p in await repo.list_pending(None)] == ["a1", "a2"]
    assert not await repo.transition_pending(
        est_api.PendingId("ghost"), from_status=pending, to_status=approved, at=now
    )


async def _users(repo: EstRepository) -> None:
    now = datetime.now(UTC)
    audit = AuditEvent(at=now, actor="op", action="x", target="y")
    await repo.put_user(est_api.EstUser("default", "u1", "h1", now), audit=audit)
    await repo.put_user(est_api.EstUser("default", "u1", "h2", now), audit=audit)
    await repo.put_user(est_api.EstUser("other", "u1", "h3", now), audit=audit)
    narrowed = est_api.EstUser(
        "other", "u2", "h4", now, dns_suffixes=("lab.corp",), subject_patterns=(), max_days=7
    )
    await repo.put_user(narrowed, audit=audit)
    assert await repo.get_user("other", "u2") == narrowed
    # A reset replaces the narrowing and keeps the creation time.
    reset = est_api.EstUser("other", "u2", "h5", now + timedelta(days=1))
    await repo.put_user(reset, audit=audit)
    assert await repo.get_user("other", "u2") == est_api.EstUser("other", "u2", "h5", now)
    assert await repo.remove_user("other", "u2", audit=audit)
    got = await repo.get_user("default", "u1")
    assert got is not None
    assert got.password_hash == "h2"
    assert [u.label for u in await repo.list_users(None)] == ["default", "other"]
    assert [u.password_hash for u in await repo.list_users("other")] == ["h3"]
    assert await repo.remove_user("other", "u1", audit=audit)
    assert not await repo.remove_user("other", "u1", audit=audit)
    assert not await repo.remove_label("ghost", audit=audit)


async def _labels(repo: EstRepository) -> None:
    now = datetime.now(UTC)
    audit = AuditEvent(at=now, actor="op", action="x", target="y")
    label = est_api.EstLabel(
        name="factory",
        ca="issuing",
        profile="tls-client",
        auth_modes=frozenset({est_api.AuthMode.CERT}),
        trust_anchors_pem=b"-----BEGIN CERTIFICATE-----\n",
        approval_required=True,
        csrattrs=(est_api.CsrAttr("1.2.3", ("1.2.4",)),),
        source="whatever",
        dns_suffixes=("corp.internal", "iot.example"),
        allow_wildcard=True,
        ip_ranges=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")),
        uri_patterns=("spiffe://corp/*",),
        email_domains=("corp.example",),
        subject_patterns=("CN=fire-sensor-*", "CN=door-*"),
        max_days=90,
    )
    await repo.add_label(label, audit=audit)
    await repo.add_label(est_api.EstLabel(name="alpha", csrattrs=()), audit=audit)
    with pytest.raises(EngineError) as err:
        await repo.add_label(est_api.EstLabel(name="factory"), audit=audit)
    assert err.value.kind is ProblemKind.CONFLICT
    got = await repo.get_label("factory")
    assert got is not None
    assert got.source == "database"
    assert got == est_api.EstLabel(
        **{
            **{f: getattr(label, f) for f in label.__dataclass_fields__},
            "source": "database",
        }
    )
    assert [lb.name for lb in await repo.list_labels()] == ["alpha", "factory"]
    assert (await repo.get_label("alpha")) == est_api.EstLabel(name="alpha", csrattrs=())
    await repo.put_user(est_api.EstUser("factory", "u1", "h1", now), audit=audit)
    await repo.put_user(est_api.EstUser("alpha", "u1", "h1", now), audit=audit)
    assert await repo.remove_label("factory", audit=audit)
    assert await repo.get_label("factory") is None
    assert [u.label for u in await repo.list_users(None)] == ["alpha"]


async def _login_budgets(repo: EstRepository) -> None:
    addr = LoginBudget("a:1", rate=1.0, burst=2)
    acct = LoginBudget("u:1", rate=0.5, burst=1)
    assert await repo.take_login_tokens([addr, acct], now=100.0) == []
    # The account bucket is empty: all or none, so the address keeps its last token.
    refused = await repo.take_login_tokens([addr, acct], now=100.0)
    assert [(b.key, b.tokens, b.at, b.burst) for b in refused] == [("u:1", 0.0, 100.0, 1)]
    levels = {b.key: b.level(100.0) for b in await repo.get_login_budgets(["a:1", "u:1", "x"])}
    assert levels == {"a:1": 1.0, "u:1": 0.0}
    # Two seconds refill one token at 0.5/s; a clock running backwards refills nothing.
    assert await repo.take_login_tokens([acct], now=102.0) == []
    assert [b.key for b in await repo.take_login_tokens([acct], now=50.0)] == ["u:1"]
    (stored,) = await repo.get_login_budgets(["u:1"])
    assert (stored.tokens, stored.at) == (0.0, 102.0)
    # The last token of the address goes; giving back stops at the burst.
    assert await repo.take_login_tokens([addr], now=100.0) == []
    await repo.return_login_tokens(["a:1", "ghost"])
    await repo.return_login_tokens(["a:1"])
    await repo.return_login_tokens(["a:1"])
    (stored,) = await repo.get_login_budgets(["a:1"])
    assert stored.tokens == 2.0
    # Another node's clock behind this one's: no refill, no drain, the time stays.
    assert await repo.take_login_tokens([addr], now=90.0) == []
    (stored,) = await repo.get_login_budgets(["a:1"])
    assert (stored.tokens, stored.at) == (1.0, 100.0)
    # New settings replace the stored rate and burst.
    assert await repo.take_login_tokens([LoginBudget("a:1", rate=2.0, burst=5)], now=100.0) == []
    (stored,) = await repo.get_login_budgets(["a:1"])
    assert (stored.rate, stored.burst, stored.tokens) == (2.0, 5, 0.0)
    # A long idle bucket holds its burst, no more.
    assert await repo.take_login_tokens([acct], now=1000.0) == []
    (stored,) = await repo.get_login_budgets(["u:1"])
    assert (stored.tokens, stored.at) == (0.0, 1000.0)
    # a:1 refills by 100 + 5/2, u:1 by 1000 + 1/0.5: only the first is gone at 103.
    assert await repo.prune_login_budgets(now=103.0) == 1
    assert [b.key for b in await repo.get_login_budgets(["a:1", "u:1"])] == ["u:1"]


_CONTRACT: list[Callable[[EstRepository], Awaitable[None]]] = [
    _pending_transitions,
    _users,
    _labels,
    _login_budgets,
]
_IDS = ["pending-transitions", "users", "labels", "login-budgets"]


@pytest.mark.parametrize("check", _CONTRACT, ids=_IDS)
async def test_memory_fake(check: Callable[[EstRepository], Awaitable[None]]) -> None:
    await check(MemoryEstRepository())


@pytest.mark.parametrize("check", _CONTRACT, ids=_IDS)
async def test_sql(check: Callable[[EstRepository], Awaitable[None]], database: Database) -> None:
    await check(SqlEstRepository(database))
