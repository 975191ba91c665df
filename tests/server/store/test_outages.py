"""Which driver errors are storage outages, and stale pooled connections after a restart."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from server.ca.errors import StorageUnavailableError
from server.store import outages
from server.store.database import Database
from server.store.models import CARow


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    err = sa_exc.DBAPIError(
        "SELECT 1", None, Exception("adapted"), connection_invalidated=invalidated
    )
    err.orig.__cause__ = orig  # type: ignore[union-attr]  # SQLAlchemy's adapter chains so
    return err


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        pytest.param(ConnectionRefusedError(111, "refused"), True, id="ok/refused"),
        pytest.param(asyncpg.CannotConnectNowError("starting up"), True, id="ok/starting-up"),
        pytest.param(asyncpg.AdminShutdownError("terminated"), True, id="ok/terminated"),
        pytest.param(
            _wrapped(asyncpg.exceptions.InternalClientError("state 15")), True, id="ok/stale"
        ),
        pytest.param(_wrapped(ValueError("x"), invalidated=True), True, id="ok/invalidated"),
        pytest.param(
            sqlite3.OperationalError("unable to open database file"), True, id="ok/sqlite"
        ),
        pytest.param(asyncpg.UniqueViolationError("dup"), False, id="fail/unique"),
        pytest.param(_wrapped(asyncpg.UndefinedColumnError("no column")), False, id="fail/bug"),
        pytest.param(sqlite3.OperationalError("no such table: x"), False, id="fail/sqlite-bug"),
        pytest.param(ValueError("bug"), False, id="fail/value-error"),
    ],
)
def test_outages_are_told_from_bugs(exc: BaseException, outage: bool) -> None:
    assert outages.is_outage(exc) is outage


async def test_translated_raises_the_typed_error_and_passes_bugs() -> None:
    with pytest.raises(StorageUnavailableError) as caught:
        async with outages.translated():
            raise ConnectionResetError(104, "reset")
    assert caught.value.retry_after == 5
    with pytest.raises(KeyError):
        async with outages.translated():
            raise KeyError("bug")


@pytest.mark.postgres
async def test_pool_that_outlived_its_connections_recovers(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("PostgreSQL connections only")
    await database.fetch_all(select(CARow.id))
    async with database.pg() as pg:
        await pg.fetchval("SELECT 1")
    admin = await asyncpg.connect(database.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 2
    # Every pooled connection is dead: a read retries once, on a fresh one.
    assert await database.fetch_all(select(CARow.id)) == []
    # A write is not retried (it may have happened): an outage at most, never a bug.
    try:
        async with database.pg() as pg:
            await pg.fetchval("SELECT 1")
    except StorageUnavailableError:
        pass
    async with database.pg() as pg:
        assert await pg.fetchval("SELECT 1") == 1
    async with database.write() as conn:
        await conn.execute(text("SELECT 1"))


async def test_an_outage_discards_the_pooled_connections(database: Database) -> None:
    await database.fetch_all(select(CARow.id))
    pool = database.engine.pool
    with pytest.raises(StorageUnavailableError):
        async with database.connect():
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 15")
    # Nothing that lived through the outage is handed out again.
    assert database.engine.pool is not pool
    assert await database.fetch_all(select(CARow.id)) == []
