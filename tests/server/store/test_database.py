"""Database read helpers: one-statement reads on both backends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import cast

from sqlalchemy import Table, insert, select, text

from server.store.database import Database, sqlite_url
from server.store.models import MetaRow

meta_table = cast(Table, MetaRow.__table__)


async def test_fetch_sees_every_committed_write(database: Database) -> None:
    """A read issued after a write returns it (SQLite: on the reader thread's own connection)."""
    for i in range(20):
        async with database.write() as conn:
            await conn.execute(insert(meta_table).values(key=f"k{i}", value=str(i)))
        row = await database.fetch_first(
            select(meta_table.c.value).where(meta_table.c.key == f"k{i}")
        )
        assert row is not None
        assert row[0] == str(i)
    rows = await database.fetch_all(select(meta_table.c.key).order_by(meta_table.c.key))
    assert len(rows) == 20
    assert await database.fetch_first(select(meta_table).where(meta_table.c.key == "none")) is None


async def test_concurrent_reads_and_close(database: Database) -> None:
    async with database.write() as conn:
        await conn.execute(insert(meta_table).values(key="a", value="1"))
    stmt = select(meta_table.c.value).where(meta_table.c.key == "a")
    rows = await asyncio.gather(*[database.fetch_first(stmt) for _ in range(100)])
    assert {r[0] for r in rows if r is not None} == {"1"}
    assert all(r is not None for r in rows)
    await database.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("privca-sqlite-read")]


async def test_sqlite_commits_survive_a_power_loss(tmp_path: Path) -> None:
    """WAL with synchronous=FULL (2): every commit is synced, not only checkpoints."""
    db = Database(sqlite_url(tmp_path / "t.db"))
    try:
        async with db.connect() as conn:
            mode = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        assert (mode, journal) == (2, "wal")
    finally:
        await db.close()
