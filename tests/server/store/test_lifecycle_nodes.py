"""Two nodes on one database: a CA state change on one is enforced by the other within 5 s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from server.ca import api, grants, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA, AuditEvent, CAStatus, Principal, RevocationReason
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

    async def update_ca(self, ca: CA, *, expected: CAStatus, audit: AuditEvent) -> bool:
        self._left -= 1
        if self._left == 0:
            await self._between()
        return await super().update_ca(ca, expected=expected, audit=audit)


async def _stored(node: api.CAEngine, name: str) -> CAStatus:
    return next(c for c in await node.list_cas() if c.name == name).status


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
    assert "changed while this ran" in err.value.detail
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
