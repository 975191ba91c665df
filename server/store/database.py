"""Database connection: engine creation, SQLite pragmas and Alembic migration on start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["Database", "is_sqlite", "sqlite_url"]

_MIGRATIONS: Final = Path(__file__).with_name("migrations")


def sqlite_url(path: Path) -> str:
    """Return the aiosqlite URL of a database file."""
    return f"sqlite+aiosqlite:///{path}"


def is_sqlite(url: str) -> bool:
    """Return True for SQLite URLs (embedded default)."""
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """One async SQLAlchemy engine plus schema migration."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if not is_sqlite(url):
            kwargs = {"pool_size": pool_size, "max_overflow": pool_size}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # SQLite allows one writer: every repository of this process writes
        # behind one lock instead of spinning on SQLITE_BUSY.
        self.write_lock: asyncio.Lock | None = None
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.write_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        """Return True when this is the embedded SQLite database."""
        return is_sqlite(self.url)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """Open one write transaction (on SQLite behind the process-wide write lock)."""
        if self.write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self.write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Open a connection for reads."""
        async with self.engine.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        """Apply every pending Alembic migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        """Dispose of every pooled connection."""
        await self.engine.dispose()


def _upgrade(conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "heads")
