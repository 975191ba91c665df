"""Retired delegated OCSP signers: their keys are destroyed once replaced and expired.

pkcs8 signer keys on SQLite and PostgreSQL (the key is the stored blob, dropped with
its record); the token path is in ``tests/server/ca/test_hsm.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.ca import api, grants, keys
from server.ca.status import api as status_api
from server.ca.status import ports as status_ports
from server.ca.status import responder
from server.ca.types import CA, Principal
from server.config import load_settings, status_settings
from server.store.database import Database
from server.store.memory import MemoryRepository, MemoryStatusRepository
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository
from tests.support import FakeClock, InjectedError, failing_statements, make_csr

OP = Principal("operator", "test")
LIFETIME = timedelta(days=30)


class Env:
    """An engine, its status service (delegated signers on) and a fake clock."""

    def __init__(
        self,
        repo: SqlRepository | MemoryRepository,
        store: status_ports.StatusRepository,
        backend: keys.KeyBackend,
        settings: status_api.StatusSettings | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.repo = repo
        self.store = store
        self.engine = api.CAEngine(
            repo, backend, settings=api.EngineSettings(default_ca="issuing"), clock=self.clock
        )
        self.status = status_api.StatusService(
            self.engine,
            repo,
            store,
            settings=settings
            or status_api.StatusSettings(
                ocsp=responder.ResponderSettings(delegated_signer=True, signer_lifetime=LIFETIME)
            ),
            clock=self.clock,
        ).attach()

    async def hierarchy(self) -> CA:
        await self.engine.create_root("root", actor=OP)
        await self.engine.create_subordinate("issuing", parent="root", actor=OP)
        await self.status.start()
        csr, _ = make_csr(["dns:leaf.internal"])
        # Pre-signing the leaf's answer makes the issuing CA's first signer.
        await self.engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
        return await self.engine.get_ca("issuing")

    async def rotate(self) -> None:
        """Pass half the signer's life; refreshing stale answers makes the next signer."""
        self.clock.advance(LIFETIME / 2 + timedelta(hours=1))
        assert await self.status.responder.refresh_stale() > 0

    async def serials(self, ca: CA) -> list[int]:
        return [s.serial for s in await self.store.list_signers(ca.id)]


@pytest.fixture
def sql_env(database: Database, key_backend: keys.Pkcs8KeyBackend) -> Env:
    return Env(SqlRepository(database), SqlStatusRepository(database), key_backend)


@pytest.fixture
def memory_env(key_backend: keys.Pkcs8KeyBackend) -> Env:
    repo = MemoryRepository()
    return Env(repo, MemoryStatusRepository(repo), key_backend)


async def _stored_keys(database: Database, ca: CA) -> list[str]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT key_ref FROM ocsp_signers WHERE ca_id = :ca ORDER BY id"),
            {"ca": ca.id},
        )
        return [r[0] for r in rows]


async def test_expired_replaced_signer_keys_are_dropped(sql_env: Env, database: Database) -> None:
    env = sql_env
    issuing = await env.hierarchy()
    first = await env.store.current_signer(issuing.id)
    assert first is not None
    assert first.key.backend == "pkcs8"
    await env.rotate()
    second = await env.store.current_signer(issuing.id)
    assert second is not None
    assert second.serial != first.serial
    assert await env.serials(issuing) == [first.serial, second.serial]

    # Replaced but still valid: kept (answers it signed may still be served).
    assert await env.status.retire_signers() == 0
    # Expired, but within the retention margin: kept.
    env.clock.current = first.not_after + timedelta(hours=12)
    assert await env.status.retire_signers() == 0
    assert await _stored_keys(database, issuing) == [first.key.ref, second.key.ref]

    # The root's answers are signed by delegated signers too, rotated alongside.
    root = await env.engine.get_ca("root")
    root_first = (await env.store.list_signers(root.id))[0]
    env.clock.current = first.not_after + timedelta(days=1, seconds=1)
    assert await env.status.retire_signers() == 2
    # The pkcs8 key was its stored blob: the row (and the blob) is gone.
    assert await _stored_keys(database, issuing) == [second.key.ref]
    events = await env.repo.list_audit(limit=5)
    destroyed = {e.target: e for e in events if e.action == "ocsp.signer-key-destroy"}
    assert set(destroyed) == {f"issuing/{first.serial:X}", f"root/{root_first.serial:X}"}
    assert destroyed[f"issuing/{first.serial:X}"].detail["ref"] == first.key.ref
    # Nothing more to do; the current signer still signs.
    assert await env.status.retire_signers() == 0
    await env.engine.key_signer(second.key)

    # The current signer stays even once expired (nothing has replaced it yet).
    env.clock.current = second.not_after + timedelta(days=30)
    assert await env.status.retire_signers() == 0
    assert await env.serials(issuing) == [second.serial]


async def test_only_the_leader_retires(memory_env: Env) -> None:
    env = memory_env
    issuing = await env.hierarchy()
    await env.rotate()
    before = await env.serials(issuing)
    env.clock.advance(LIFETIME + timedelta(days=2))
    assert isinstance(env.store, MemoryStatusRepository)
    async with env.store.leader("ocsp-signer-retire") as leading:
        assert leading
        # Another node holds the lock: this one leaves the signers alone.
        assert await env.status.retire_signers() is None
        assert await env.serials(issuing) == before
    assert await env.status.retire_signers() == 2  # the issuing CA's and the root's
    assert await env.serials(issuing) == before[1:]


async def test_maintenance_loop_retires_signers(memory_env: Env) -> None:
    env = memory_env
    issuing = await env.hierarchy()
    await env.rotate()
    first = (await env.serials(issuing))[0]
    env.clock.advance(LIFETIME)
    task = asyncio.create_task(env.status.run_maintenance())
    try:
        async with asyncio.timeout(10):
            while True:
                if first not in await env.serials(issuing):
                    break
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_round_is_bounded_and_a_failure_is_kept(memory_env: Env) -> None:
    env = memory_env
    issuing = await env.hierarchy()
    for _ in range(3):
        await env.rotate()
    assert isinstance(env.store, MemoryStatusRepository)
    store = env.store
    assert len(await env.serials(issuing)) == 4
    assert len(store.signers) == 8  # the root's four too
    env.clock.advance(LIFETIME * 2)
    env.status.retirement._batch = 2
    assert await env.status.retirement.sweep() == 2
    assert len(store.signers) == 6
    # A key its backend cannot destroy (not configured on this node) keeps its record.
    env.status.retirement._batch = 10
    stray = (await store.list_signers(issuing.id))[0]
    store.signers[store.signers.index(stray)] = dataclasses.replace(
        stray, key=dataclasses.replace(stray.key, backend="vault")
    )
    assert await env.status.retirement.sweep() == 3
    assert await env.serials(issuing) == [stray.serial, (await env.serials(issuing))[-1]]
    assert len(store.signers) == 3


async def test_configured_retention_is_honoured(
    key_backend: keys.Pkcs8KeyBackend, tmp_path: Path
) -> None:
    """``[revocation] ocsp_signer_retention_hours`` reaches the sweep (72 h, not the default 24)."""
    cfg = tmp_path / "privca.toml"
    cfg.write_text(
        "[revocation]\nocsp_delegated_signer = true\n"
        f"ocsp_signer_lifetime_days = {LIFETIME.days}\nocsp_signer_retention_hours = 72\n"
    )
    repo = MemoryRepository()
    env = Env(
        repo,
        MemoryStatusRepository(repo),
        key_backend,
        settings=status_settings(load_settings(cfg)),
    )
    issuing = await env.hierarchy()
    first = await env.store.current_signer(issuing.id)
    assert first is not None
    await env.rotate()
    # Past the default day, within the configured three: kept.
    env.clock.current = first.not_after + timedelta(days=2)
    assert await env.status.retire_signers() == 0
    assert first.serial in await env.serials(issuing)
    env.clock.current = first.not_after + timedelta(hours=72, seconds=1)
    assert await env.status.retire_signers() == 2  # the issuing CA's and the root's
    assert first.serial not in await env.serials(issuing)


@pytest.mark.parametrize(
    "statement",
    ["DELETE FROM OCSP_SIGNERS", "INSERT INTO AUDIT_LOG"],
    ids=["fail/drop-row", "fail/record"],
)
async def test_a_signer_is_dropped_with_its_record_or_not_at_all(
    sql_env: Env, database: Database, statement: str
) -> None:
    env = sql_env
    issuing = await env.hierarchy()
    first = await env.store.current_signer(issuing.id)
    assert first is not None
    await env.rotate()
    root = await env.engine.get_ca("root")
    kept = [*await env.store.list_signers(root.id), *await env.store.list_signers(issuing.id)]
    seq = (await env.repo.audit_head()).seq
    env.clock.current = first.not_after + timedelta(days=1, seconds=1)
    with failing_statements(database, statement), pytest.raises(InjectedError):
        await env.status.retire_signers()
    # Neither the row (a pkcs8 key is its blob) went without its record, nor the reverse.
    assert [
        *await env.store.list_signers(root.id),
        *await env.store.list_signers(issuing.id),
    ] == kept
    assert (await env.repo.audit_head()).seq == seq
    assert (await env.engine.verify_audit()).broken is None
    # The next round finishes: both signers dropped, one record each.
    assert await env.status.retire_signers() == 2
    found = await env.repo.audit_page(after_seq=seq, limit=10)
    assert sorted((e.actor, e.action, e.target, e.source) for e in found) == sorted(
        ("system:ocsp", "ocsp.signer-key-destroy", target, "")
        for target in (f"issuing/{first.serial:X}", f"root/{kept[0].serial:X}")
    )
