"""Migrations: one head (``make migration`` needs it); the audit chain migration chains old rows."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, insert

from server.ca import api, keys
from server.store.database import _MIGRATIONS, Database, _upgrade, sqlite_url
from server.store.repository import SqlRepository
from tests import conftest


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def test_one_head() -> None:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"migration history has several heads {heads}: add a merge revision"


def test_upgrade_reaches_the_head(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        _upgrade(conn)
        (version,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    assert version == _scripts().get_current_head()


def _to(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


# audit_log as revision 0007 left it.
_OLD_LOG = sa.table(
    "audit_log",
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("detail", sa.JSON()),
)
_OLD_ROWS = [
    (datetime(2026, 1, 1, 10, 0, 0, 5, tzinfo=UTC), "operator:cli", "ca.create-root", "root"),
    (datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC), "operator:cli", "cert.issue", "root/1A"),
    (datetime(2026, 1, 1, 10, 0, 2, tzinfo=UTC), "acme:x", "cert.revoke", "1A"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no migration run yet) on each backend."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "old.db")
        return
    base = conftest._pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (CI sets CI=true and runs them)")
    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"privca_mig_{uuid.uuid4().hex[:10]}"
    conftest._pg_admin(f'CREATE DATABASE "{name}"', admin)
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}"
    finally:
        conftest._pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)


async def test_existing_audit_rows_are_chained_in_id_order(
    fresh_url: str, key_backend: keys.Pkcs8KeyBackend
) -> None:
    db = Database(fresh_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_to, "0007_merge")
            for at, actor, action, target in _OLD_ROWS:
                await conn.execute(
                    insert(_OLD_LOG).values(
                        at=at, actor=actor, action=action, target=target, detail={"n": target}
                    )
                )
        await db.migrate()
        repo = SqlRepository(db)
        ca = api.CAEngine(repo, key_backend)
        result = await ca.verify_audit()
        assert (result.count, result.broken) == (3, None)
        page = await repo.audit_page(after_seq=0, limit=10)
        assert [(e.seq, e.target, e.source) for e in page] == [
            (1, "root", ""),
            (2, "root/1A", ""),
            (3, "1A", ""),
        ]
        assert page[0].at == _OLD_ROWS[0][0]
        assert page[0].detail == {"n": "root"}
        await repo.add_audit(dataclasses.replace(page[0], seq=None, hash="", prev_hash=""))
        result = await ca.verify_audit()
        assert (result.count, result.broken) == (4, None)
    finally:
        await db.close()
