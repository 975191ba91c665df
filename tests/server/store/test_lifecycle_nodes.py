"""Two nodes on one database: a CA state change on one is enforced by the other within 5 s."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.ca import api, grants, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import Principal, RevocationReason
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
