"""Two nodes on one database: a CA state change on one is enforced by the other within 5 s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from server.ca import api, custody, grants, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import (
    CA,
    AuditEvent,
    CAStatus,
    CertQuery,
    KeyHandle,
    Principal,
    RevocationReason,
)
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.support import make_csr

OP = Principal("operator", "test")
# The issue's promise: every node sharing the database sees a change within this.
PROPAGATION_S = 5.0


class Monotonic:
    """An injectable monotonic clock (advanced by hand, never slept on)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def node_b(
    database: Database, key_backend: keys.Pkcs8KeyBackend
) -> AsyncIterator[tuple[api.CAEngine, Monotonic]]:
    """A second process: its own connection pool and engine caches, the same database."""
    db = Database(database.url)
    mono = Monotonic()
    try:
        yield api.CAEngine(SqlRepository(db), key_backend, monotonic=mono), mono
    finally:
        await db.close()


async def _issue(engine: api.CAEngine, ca: str) -> None:
    csr, _ = make_csr(["dns:node.internal"])
    await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca=ca)


async def _refused(engine: api.CAEngine, ca: str) -> str:
    with pytest.raises(EngineError) as err:
        await _issue(engine, ca)
    assert err.value.kind is ProblemKind.POLICY
    return err.value.detail


@pytest.mark.parametrize("change", ["disable", "revoke-parent"])
async def test_node_b_refuses_within_five_seconds_of_node_a(
    sql_engine: api.CAEngine,
    node_b: tuple[api.CAEngine, Monotonic],
    change: str,
) -> None:
    node_a = sql_engine
    engine_b, mono = node_b
    await node_a.create_root("root", actor=OP)
    await node_a.create_subordinate("mid", parent="root", actor=OP)
    await node_a.create_subordinate("issuing", parent="mid", actor=OP)
    await _issue(engine_b, "issuing")  # B has the CAs cached as active
    if change == "disable":
        await node_a.disable_ca("issuing", actor=OP)
    else:
        await node_a.revoke_ca("mid", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    # B re-reads a CA's row once its copy is STATE_TTL old; 5 s is the promise.
    assert api.STATE_TTL < PROPAGATION_S
    mono.now += api.STATE_TTL + 0.001
    if change == "revoke-parent":
        assert "revoked" in await _refused(engine_b, "issuing")
        assert "revoked" in await _refused(engine_b, "mid")
    else:
        assert "CA issuing is disabled" in await _refused(engine_b, "issuing")
        # And back: an enable on A is seen by B within the same bound.
        await node_a.enable_ca("issuing", actor=OP)
        mono.now += api.STATE_TTL + 0.001
        await _issue(engine_b, "issuing")


class _Interleaved(SqlRepository):
    """A node whose ``n``-th CA write first lets another node's change commit.

    The engine has read the CA by then: the other change lands between that read
    and this write, as when two operators act on two nodes at once.
    """

    def __init__(self, db: Database, *, n: int, between: Callable[[], Awaitable[object]]) -> None:
        super().__init__(db)
        self._left = n
        self._between = between

    async def update_ca(
        self, ca: CA, *, expected_version: int, audit: AuditEvent, **writes: Any
    ) -> bool:
        self._left -= 1
        if self._left == 0:
            await self._between()
        return await super().update_ca(ca, expected_version=expected_version, audit=audit, **writes)


async def _stored(node: api.CAEngine, name: str) -> CAStatus:
    return (await _row(node, name)).status


async def _row(node: api.CAEngine, name: str) -> CA:
    return next(c for c in await node.list_cas() if c.name == name)


async def _changes(node: api.CAEngine, target: str) -> list[str]:
    """Return the audited state changes of CA ``target``, oldest first (creation left out)."""
    events = reversed(await node.audit_log(limit=1000))
    return [e.action for e in events if e.target == target and e.action != "ca.create-sub"]


@pytest.fixture
async def three_tiers(sql_engine: api.CAEngine) -> api.CAEngine:
    await sql_engine.create_root("root", actor=OP)
    await sql_engine.create_subordinate("mid", parent="root", actor=OP)
    await sql_engine.create_subordinate("issuing", parent="mid", actor=OP)
    return sql_engine


async def test_revoke_on_one_node_wins_over_a_stale_enable_on_another(
    three_tiers: api.CAEngine, database: Database, key_backend: keys.Pkcs8KeyBackend
) -> None:
    node_a = three_tiers
    await node_a.disable_ca("issuing", actor=OP)
    revoke = node_a.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    db = Database(database.url)
    try:
        node_b = api.CAEngine(_Interleaved(db, n=1, between=lambda: revoke), key_backend)
        with pytest.raises(EngineError) as err:
            await node_b.enable_ca("issuing", actor=OP)  # read DISABLED, then A revoked
    finally:
        await db.close()
    assert err.value.kind is ProblemKind.CONFLICT
    assert "changed while it was being enabled" in err.value.detail
    assert "run the command again" in err.value.detail
    assert await _stored(node_a, "issuing") is CAStatus.REVOKED
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.revoke"]


async def test_revoke_that_read_a_stale_state_starts_again_and_wins(
    three_tiers: api.CAEngine, database: Database, key_backend: keys.Pkcs8KeyBackend
) -> None:
    node_a = three_tiers
    await node_a.disable_ca("issuing", actor=OP)
    enable = node_a.enable_ca("issuing", actor=OP)
    db = Database(database.url)
    try:
        node_b = api.CAEngine(_Interleaved(db, n=1, between=lambda: enable), key_backend)
        # B reads DISABLED, A enables, B's write loses; B reads ACTIVE and revokes.
        revoked = await node_b.revoke_ca("issuing", reason=RevocationReason.SUPERSEDED, actor=OP)
    finally:
        await db.close()
    assert revoked.status is CAStatus.REVOKED
    assert await _stored(node_a, "issuing") is CAStatus.REVOKED
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.enable", "ca.revoke"]


async def test_revoke_marks_a_child_revoked_when_it_changed_meanwhile(
    three_tiers: api.CAEngine, database: Database, key_backend: keys.Pkcs8KeyBackend
) -> None:
    node_a = three_tiers
    disable = node_a.disable_ca("issuing", actor=OP)
    db = Database(database.url)
    try:
        # The second CA write of B's revoke of mid is issuing's: A disables it just before.
        node_b = api.CAEngine(_Interleaved(db, n=2, between=lambda: disable), key_backend)
        await node_b.revoke_ca("mid", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    finally:
        await db.close()
    assert await _stored(node_a, "mid") is CAStatus.REVOKED
    assert await _stored(node_a, "issuing") is CAStatus.REVOKED
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.revoke"]


@pytest.fixture
async def node_b_with(
    database: Database, key_backend: keys.Pkcs8KeyBackend
) -> AsyncIterator[Callable[[int, Callable[[], Awaitable[object]]], api.CAEngine]]:
    """Make node B: its ``n``-th CA write first lets ``between`` (node A's change) commit."""
    dbs: list[Database] = []

    def make(n: int, between: Callable[[], Awaitable[object]]) -> api.CAEngine:
        dbs.append(Database(database.url))
        return api.CAEngine(_Interleaved(dbs[-1], n=n, between=between), _carrying(key_backend))

    try:
        yield make
    finally:
        for db in dbs:
            await db.close()


def _carrying(software: keys.Pkcs8KeyBackend) -> keys.KeyBackends:
    """Key backends that can carry a software key out of the database (``custody``)."""
    return keys.KeyBackends(software, custody.CarriedKeys(software))


# A change that keeps the status (offline flag, certificate, key) is still a change: any
# write that read the CA before it loses (CA.version), instead of silently undoing it.


async def test_set_offline_between_an_enables_read_and_write_makes_the_enable_lose(
    three_tiers: api.CAEngine, node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a = three_tiers
    await node_a.disable_ca("issuing", actor=OP)
    node_b = node_b_with(1, lambda: node_a.set_ca_offline("issuing", offline=True, actor=OP))
    with pytest.raises(EngineError) as err:
        await node_b.enable_ca("issuing", actor=OP)  # read DISABLED online; A set it offline
    assert err.value.kind is ProblemKind.CONFLICT
    assert "CA issuing changed while it was being enabled" in err.value.detail
    assert "run the command again" in err.value.detail
    stored = await _row(node_a, "issuing")
    # The offline flag (serving processes never load the key) survives.
    assert (stored.status, stored.offline) == (CAStatus.DISABLED, True)
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.set-offline"]


async def test_set_offline_that_read_before_an_enable_starts_again_and_wins(
    three_tiers: api.CAEngine, node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a = three_tiers
    await node_a.disable_ca("issuing", actor=OP)
    node_b = node_b_with(1, lambda: node_a.enable_ca("issuing", actor=OP))
    # B reads DISABLED, A enables, B's write loses; B reads ACTIVE and marks it offline.
    done = await node_b.set_ca_offline("issuing", offline=True, actor=OP)
    stored = await _row(node_a, "issuing")
    assert (stored.status, stored.offline) == (CAStatus.ACTIVE, True)
    assert done == stored
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.enable", "ca.set-offline"]


async def test_renew_between_a_disables_read_and_write_makes_the_disable_lose(
    three_tiers: api.CAEngine, node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a = three_tiers
    old = (await _row(node_a, "issuing")).cert_der
    renewals: list[object] = []

    async def renew() -> None:
        renewals.append(await node_a.renew_ca("issuing", actor=OP))

    node_b = node_b_with(1, renew)
    with pytest.raises(EngineError) as err:
        await node_b.disable_ca("issuing", actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    assert "CA issuing changed while it was being disabled" in err.value.detail
    stored = await _row(node_a, "issuing")
    # The renewal's certificate is what is stored, not the one the disable read.
    assert stored.status is CAStatus.ACTIVE
    assert stored.cert_der not in (None, old)
    assert len(renewals) == 1
    assert await _changes(node_a, "issuing") == ["ca.renew"]


async def test_disable_between_a_renews_read_and_write_makes_the_renew_lose(
    three_tiers: api.CAEngine, node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a = three_tiers
    before = await _row(node_a, "issuing")
    node_b = node_b_with(1, lambda: node_a.disable_ca("issuing", actor=OP))
    with pytest.raises(EngineError) as err:
        await node_b.renew_ca("issuing", actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    assert "CA issuing changed while it was being renewed" in err.value.detail
    stored = await _row(node_a, "issuing")
    assert (stored.status, stored.cert_der) == (CAStatus.DISABLED, before.cert_der)
    # The discarded certificate was never recorded under the parent either.
    mid = await _row(node_a, "mid")
    assert [r.serial for r in await node_a.find_certificates(CertQuery(ca_id=mid.id))] == [
        before.certificate.serial_number
    ]
    assert await _changes(node_a, "issuing") == ["ca.disable"]


async def test_renew_updates_a_child_chain_that_changed_meanwhile(
    three_tiers: api.CAEngine, node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a = three_tiers
    # B's second CA write (after mid's renewal is stored) is issuing's chain: A disables
    # issuing just before, so that write loses and is re-applied to the fresh row.
    node_b = node_b_with(2, lambda: node_a.disable_ca("issuing", actor=OP))
    renewal = await node_b.renew_ca("mid", actor=OP)
    mid = await _row(node_a, "mid")
    issuing = await _row(node_a, "issuing")
    assert mid.cert_der == renewal.ca.cert_der
    assert issuing.status is CAStatus.DISABLED
    assert issuing.chain_der == (mid.cert_der, *mid.chain_der)
    assert await _changes(node_a, "issuing") == ["ca.disable", "ca.chain-update"]


@pytest.fixture
async def offline_issuing(
    three_tiers: api.CAEngine, sql_repo: SqlRepository, key_backend: keys.Pkcs8KeyBackend
) -> tuple[api.CAEngine, KeyHandle]:
    """Node A (able to carry keys) and issuing offline with its key still in the database.

    Also the carried handle of that key, as ``privca ca set-offline --key-out`` makes it
    before it moves the key out.
    """
    node_a = api.CAEngine(sql_repo, _carrying(key_backend))
    await node_a.set_ca_offline("issuing", offline=True, actor=OP)
    handle, _ = await node_a.carry_out_key(await _row(node_a, "issuing"))
    return node_a, handle


async def test_key_move_between_a_set_onlines_read_and_write_makes_it_lose(
    offline_issuing: tuple[api.CAEngine, KeyHandle], node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a, handle = offline_issuing
    node_b = node_b_with(
        1, lambda: node_a.set_ca_offline("issuing", offline=True, actor=OP, key=handle)
    )
    with pytest.raises(EngineError) as err:
        await node_b.set_ca_offline("issuing", offline=False, actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    assert "CA issuing changed while it was being brought online" in err.value.detail
    stored = await _row(node_a, "issuing")
    # The key stays out of the database and the CA offline: the stale set-online would
    # have put the encrypted key back and let serving processes load it.
    assert stored.offline
    assert stored.key == handle
    assert custody.is_carried(stored.key)
    assert await _changes(node_a, "issuing") == ["ca.set-offline", "ca.set-offline"]


async def test_key_move_that_read_before_a_set_online_starts_again_and_wins(
    offline_issuing: tuple[api.CAEngine, KeyHandle], node_b_with: Callable[..., api.CAEngine]
) -> None:
    node_a, handle = offline_issuing
    node_b = node_b_with(1, lambda: node_a.set_ca_offline("issuing", offline=False, actor=OP))
    # B reads offline (key in the database), A brings it online, B's write loses; B reads
    # it online, checks the carried key again and takes it offline with the key out.
    await node_b.set_ca_offline("issuing", offline=True, actor=OP, key=handle)
    stored = await _row(node_a, "issuing")
    assert stored.offline
    assert stored.key == handle
    assert await _changes(node_a, "issuing") == [
        "ca.set-offline",
        "ca.set-online",
        "ca.set-offline",
    ]
