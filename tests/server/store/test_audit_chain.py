"""The hash-chained audit trail on SQLite and PostgreSQL: appends, tampering, two writers."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import Table, delete, select, update

from server.ca import api, audit, grants, keys
from server.ca.audit import BreakKind
from server.ca.types import AuditEvent, Principal
from server.store import audit_chain
from server.store.database import Database
from server.store.models import AuditHeadRow, AuditRow
from server.store.repository import SqlRepository
from tests.support import make_csr

_LOG = cast(Table, AuditRow.__table__)
_HEAD = cast(Table, AuditHeadRow.__table__)
OP = Principal("operator", "test", source="cli@test-host")
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        at=T0 + timedelta(seconds=i),
        actor="operator:test",
        action="test.event",
        target=f"t{i}",
        detail={"n": str(i), "a": "x"},
        source="10.0.0.1",
    )


async def _five(repo: SqlRepository) -> None:
    for i in range(1, 6):
        await repo.add_audit(_event(i))


async def test_records_are_numbered_and_linked(
    sql_repo: SqlRepository, sql_engine: api.CAEngine
) -> None:
    await _five(sql_repo)
    page = await sql_repo.audit_page(after_seq=0, limit=10)
    assert [e.seq for e in page] == [1, 2, 3, 4, 5]
    assert page[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(page))
    assert page[2].source == "10.0.0.1"
    assert page[2].at == T0 + timedelta(seconds=3)  # microseconds survive the round trip
    assert await sql_repo.audit_head() == audit.ChainHead(5, page[-1].hash)
    result = await sql_engine.verify_audit(page=2)
    assert (result.count, result.broken) == (5, None)


async def test_issuance_batch_and_engine_paths_share_one_chain(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    await sql_engine.create_root("root", actor=OP)
    await sql_engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)
    csrs = [make_csr([f"dns:h{i}.internal"])[0] for i in range(8)]
    await asyncio.gather(
        *(
            sql_engine.issue(c, grant=grants.OPERATOR, principal=OP, profile="tls-server")
            for c in csrs
        )
    )
    result = await sql_engine.verify_audit(page=3)
    log = await sql_engine.audit_log(limit=100)
    assert (result.count, result.broken) == (len(log), None)
    leaves = [e for e in log if e.detail.get("profile") == "tls-server"]
    assert len(leaves) == 8
    newest = (await sql_engine.audit_log(limit=1))[0]
    assert (newest.action, newest.actor, newest.source) == (
        "cert.issue",
        "operator:test",
        "cli@test-host",
    )


async def _tamper(database: Database, *statements: object) -> None:
    async with database.write() as conn:
        for stmt in statements:
            await conn.execute(stmt)  # type: ignore[call-overload]  # Core statements


@pytest.mark.parametrize(
    ("case", "kind", "seq"),
    [
        ("edit", BreakKind.EDITED, 3),
        ("edit-and-rehash", BreakKind.REORDERED, 4),
        ("delete-middle", BreakKind.DELETED, 3),
        ("delete-first", BreakKind.DELETED, 1),
        ("reorder", BreakKind.REORDERED, 3),
        ("truncate-tail", BreakKind.TRUNCATED, 5),
        ("head-rewound", BreakKind.HEAD, 5),
        ("head-hash", BreakKind.HEAD, 5),
    ],
    ids=[
        "fail/edit",
        "fail/edit-and-rehash",
        "fail/delete-middle",
        "fail/delete-first",
        "fail/reorder",
        "fail/truncate-tail",
        "fail/head-rewound",
        "fail/head-hash",
    ],
)
async def test_tampering_is_named_at_the_first_bad_record(
    sql_repo: SqlRepository,
    sql_engine: api.CAEngine,
    database: Database,
    case: str,
    kind: BreakKind,
    seq: int,
) -> None:
    await _five(sql_repo)
    at3 = _LOG.c.seq == 3
    if case == "edit":
        await _tamper(database, update(_LOG).where(at3).values(detail={"n": "3", "a": "y"}))
    elif case == "edit-and-rehash":
        third = (await sql_repo.audit_page(after_seq=2, limit=1))[0]
        forged = dataclasses.replace(third, actor="operator:mallory")
        digest = audit.record_hash(forged, seq=3, prev_hash=third.prev_hash)
        await _tamper(database, update(_LOG).where(at3).values(actor=forged.actor, hash=digest))
    elif case == "delete-middle":
        await _tamper(database, delete(_LOG).where(at3))
    elif case == "delete-first":
        await _tamper(database, delete(_LOG).where(_LOG.c.seq == 1))
    elif case == "reorder":
        await _tamper(
            database,
            update(_LOG).where(at3).values(seq=-1),
            update(_LOG).where(_LOG.c.seq == 4).values(seq=3),
            update(_LOG).where(_LOG.c.seq == -1).values(seq=4),
        )
    elif case == "truncate-tail":
        await _tamper(database, delete(_LOG).where(_LOG.c.seq == 5))
    elif case == "head-rewound":
        await _tamper(database, update(_HEAD).values(seq=4))
    else:
        await _tamper(database, update(_HEAD).values(hash="f" * 64))
    result = await sql_engine.verify_audit(page=2)
    assert result.broken is not None
    assert (result.broken.kind, result.broken.seq) == (kind, seq)
    if kind is BreakKind.EDITED:
        assert result.broken.id is not None
        row = (await database.fetch_all(select(_LOG.c.id).where(at3)))[0]
        assert result.broken.id == row.id
        assert f"seq 3 (id {row.id})" in str(result.broken)


async def test_a_rolled_back_append_leaves_the_head(
    sql_repo: SqlRepository, sql_engine: api.CAEngine, database: Database
) -> None:
    await _five(sql_repo)

    class AbortError(Exception):
        pass

    async def append_then_fail() -> None:
        async with database.write() as conn:
            await audit_chain.append(conn, [_event(6)])
            raise AbortError

    with pytest.raises(AbortError):
        await append_then_fail()
    assert (await sql_repo.audit_head()).seq == 5
    await sql_repo.add_audit(_event(7))
    result = await sql_engine.verify_audit()
    assert (result.count, result.broken) == (6, None)


async def test_two_nodes_append_concurrently_into_one_chain(
    database: Database, key_backend: keys.Pkcs8KeyBackend
) -> None:
    """Two nodes (Database objects) on one database: 2 x 2 x 200 events plus issuance."""
    other = Database(database.url)
    try:
        node_a, node_b = SqlRepository(database), SqlRepository(other)
        settings = api.EngineSettings(default_ca="i")
        engine_a = api.CAEngine(node_a, key_backend, settings=settings)
        engine_b = api.CAEngine(node_b, key_backend, settings=settings)
        await engine_a.create_root("r", actor=OP)
        await engine_a.create_subordinate("i", parent="r", actor=OP, path_length=0)
        csrs = [make_csr([f"dns:n{i}.internal"])[0] for i in range(40)]

        async def events(repo: SqlRepository, tag: str) -> None:
            for i in range(200):
                await repo.add_audit(dataclasses.replace(_event(i), target=tag))

        async def issue(engine: api.CAEngine, part: list[bytes]) -> None:
            await asyncio.gather(
                *(
                    engine.issue(c, grant=grants.OPERATOR, principal=OP, profile="tls-server")
                    for c in part
                )
            )

        await asyncio.gather(
            *(events(node_a, "a") for _ in range(2)),
            *(events(node_b, "b") for _ in range(2)),
            issue(engine_a, csrs[:20]),
            issue(engine_b, csrs[20:]),
        )
        total = len(await engine_a.audit_log(limit=10_000))
        assert total >= 2 + 800 + 40
        result = await engine_b.verify_audit(page=97)
        assert (result.count, result.broken) == (total, None)
        seqs = [r.seq for r in await database.fetch_all(select(_LOG.c.seq))]
        assert sorted(seqs) == list(range(1, total + 1))
        assert await node_a.audit_head() == await node_b.audit_head()
    finally:
        await other.close()
