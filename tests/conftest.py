"""Shared fixtures: engines on the in-memory repository, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import graphlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server import wiring
from server.ca import api, audit, keys
from server.ca.types import KeyAlgorithm
from server.store.database import Database, sqlite_url
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository
from tests.support import SOFTHSM_MODULES, TEST_KDF_ROUNDS, TEST_PASSPHRASE, FakeClock, SoftHsm


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


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.close()


# Tables whose migration seeds a row: rewound instead of emptied.
_SEEDED: Final = {
    "audit_chain_head": f"UPDATE audit_chain_head SET seq = 0, hash = '{audit.GENESIS}'",  # noqa: S608 - constant
}


@dataclass(frozen=True, slots=True)
class PgDatabase:
    """The run's PostgreSQL database, migrated once, and how to empty it between tests."""

    url: str
    dsn: str
    reset_sql: str


async def _reset_sql(dsn: str) -> str:
    """Return SQL that empties every table (referencing tables first) and rewinds sequences."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
        references = await conn.fetch(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        )
        sequences = await conn.fetch(
            "SELECT sequencename, start_value FROM pg_sequences WHERE schemaname = 'public'"
        )
    finally:
        await conn.close()
    # A table is emptied after every table that references it.
    order: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(
        {row[0]: set() for row in tables}
    )
    for child, parent in references:
        if child != parent:
            order.add(parent, child)
    parts = [
        _SEEDED.get(table, f'DELETE FROM "{table}"')  # noqa: S608 - catalog names
        for table in order.static_order()
    ]
    parts += [f"SELECT setval('\"{name}\"', {start}, false)" for name, start in sequences]
    return ";\n".join(parts)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """One PostgreSQL database for this test session, migrated once.

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
    # Commits need not wait for the WAL flush: a crash loses a throw-away test database
    # only, and every commit otherwise waits for a disk shared with other work.
    _pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off', admin)
    url = f"{base.rsplit('/', 1)[0]}/{name}"
    dsn = f"{admin.rsplit('/', 1)[0]}/{name}"
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _migrate(url)).result()
            reset_sql = pool.submit(asyncio.run, _reset_sql(dsn)).result()
        yield PgDatabase(url, dsn, reset_sql)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)


_SLOW_KEYS: Final = frozenset({KeyAlgorithm.RSA_3072, KeyAlgorithm.RSA_4096})
_KEY_POOL: Final[dict[KeyAlgorithm, list[CertificateIssuerPrivateKeyTypes]]] = {}


@pytest.fixture(autouse=True)
def _pooled_slow_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generate each RSA-3072/4096 key once per run (0.3-3 s each).

    The n-th such key a test asks for is the n-th of a per-run pool, so keys stay
    distinct within a test (a CA and its issuer never share one) and are reused across
    tests, which share no state. Every other algorithm is generated as usual.
    """
    generate = keys.generate_private_key
    taken: dict[KeyAlgorithm, int] = {}

    def pooled(alg: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
        if alg not in _SLOW_KEYS:
            return generate(alg)
        index = taken.get(alg, 0)
        taken[alg] = index + 1
        pool = _KEY_POOL.setdefault(alg, [])
        if index == len(pool):
            pool.append(generate(alg))
        return pool[index]

    monkeypatch.setattr(keys, "generate_private_key", pooled)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """A fresh SoftHSM2 token for this test session (private SOFTHSM2_CONF and token dir).

    Skips locally without SoftHSM2; with CI=true a missing SoftHSM2 fails.
    """
    module = next((m for m in SOFTHSM_MODULES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        if os.environ.get("CI") == "true":
            pytest.fail("SoftHSM2 is required in CI (.ci/run installs softhsm2)")
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2); CI runs these tests")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    # The module reads this once, at its first C_Initialize in this process.
    os.environ["SOFTHSM2_CONF"] = str(conf)
    token = SoftHsm(module=module, label="privca-test", pin="1234-test", tokens=root / "tokens")
    init = [util, "--init-token", "--free", "--label", token.label, "--so-pin", "5678-test"]
    subprocess.run(
        [*init, "--pin", token.pin],
        check=True,
        capture_output=True,
    )
    return token


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def key_backend() -> keys.Pkcs8KeyBackend:
    # Few rounds: the suite makes hundreds of CA keys (the default, 600,000, is
    # asserted in tests/server/ca/test_pkcs8.py).
    return keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS)


@pytest.fixture
def memory_repo() -> MemoryRepository:
    return MemoryRepository()


@pytest.fixture
def engine(memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend) -> api.CAEngine:
    """An engine on the in-memory repository with the real clock."""
    return api.CAEngine(memory_repo, key_backend, settings=api.EngineSettings(default_ca="issuing"))


async def _migrated_sqlite(path: Path) -> None:
    await _migrate(sqlite_url(path))
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
    """A migrated, empty database on each backend; Alembic runs once per run per backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "test.db")
        db = Database(sqlite_url(tmp_path / "test.db"))
    else:
        # Emptying the tables costs ~2 ms; on this kind of disk DROP SCHEMA + Alembic,
        # CREATE DATABASE ... TEMPLATE and TRUNCATE each cost 0.8-1.6 s (file creation).
        pg: PgDatabase = request.getfixturevalue("pg_database")
        conn = await asyncpg.connect(pg.dsn, timeout=10)
        try:
            await conn.execute(pg.reset_sql)
        finally:
            await conn.close()
        db = Database(pg.url)
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


@pytest.fixture(autouse=True)
def _fast_kdf(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make CA keys written through the wiring use few PBKDF2 rounds (production_kdf: not)."""
    if request.node.get_closest_marker("production_kdf") is None:
        monkeypatch.setattr(wiring, "KDF_ROUNDS", TEST_KDF_ROUNDS)
