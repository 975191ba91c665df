"""Shared fixtures: engines on the in-memory repository, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from server.ca import api, keys
from server.store.database import Database, sqlite_url
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository
from tests.support import TEST_PASSPHRASE, FakeClock

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_base_url() -> str | None:
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        return "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    return None


async def _pg_admin_async(sql: str, dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_admin(sql: str, dsn: str) -> None:
    # Session fixtures may run inside pytest-asyncio's loop: use a private one in a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _pg_admin_async(sql, dsn)).result()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session.

    Skips locally without TEST_POSTGRES_URL; with CI=true an unreachable server fails.
    """
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (CI sets CI=true and runs them)")
    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"privca_test_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"', admin)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {admin} is unreachable: {exc}")
    prefix = base.rsplit("/", 1)[0]
    yield f"{prefix}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def key_backend() -> keys.Pkcs8KeyBackend:
    return keys.Pkcs8KeyBackend(TEST_PASSPHRASE)


@pytest.fixture
def memory_repo() -> MemoryRepository:
    return MemoryRepository()


@pytest.fixture
def engine(memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend) -> api.CAEngine:
    """An engine on the in-memory repository with the real clock."""
    return api.CAEngine(memory_repo, key_backend, settings=api.EngineSettings(default_ca="issuing"))


async def _migrated_sqlite(path: Path) -> None:
    db = Database(sqlite_url(path))
    try:
        await db.migrate()
    finally:
        await db.close()
    # Fold the WAL into the file so a plain copy carries the whole schema.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated once per run; each test gets a copy instead of running Alembic."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _migrated_sqlite(path)).result()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database on each backend (PostgreSQL: a clean schema per test)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "test.db")
        db = Database(sqlite_url(tmp_path / "test.db"))
    else:
        url: str = request.getfixturevalue("pg_url")
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            await conn.exec_driver_sql("CREATE SCHEMA public")
        await db.migrate()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def sql_repo(database: Database) -> SqlRepository:
    return SqlRepository(database)


@pytest.fixture
def sql_engine(sql_repo: SqlRepository, key_backend: keys.Pkcs8KeyBackend) -> api.CAEngine:
    """An engine on a real database (both backends)."""
    return api.CAEngine(sql_repo, key_backend, settings=api.EngineSettings(default_ca="issuing"))
