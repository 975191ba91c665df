"""Database connection: engine creation, SQLite pragmas and Alembic migration on start.

Every connection handed out here raises ``StorageUnavailableError`` when the
database is unreachable (``server.store.outages``) and, on such an error, drops the
pooled connections so none that went stale is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Executable, Row, create_engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.ca.errors import StorageUnavailableError
from server.store import outages, pgtls

__all__ = ["Batcher", "Database", "GroupCommit", "is_sqlite", "sqlite_url"]

_MIGRATIONS: Final = Path(__file__).with_name("migrations")
_CONNECT_TIMEOUT: Final = 5
_T = TypeVar("_T")
_R = TypeVar("_R")


def sqlite_url(path: Path) -> str:
    """Return the aiosqlite URL of a database file."""
    return f"sqlite+aiosqlite:///{path}"


def is_sqlite(url: str) -> bool:
    """Return True for SQLite URLs (embedded default)."""
    return url.startswith("sqlite")


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release RESET ALL round trip.

    Raw-pool users never change session state (no SET, LISTEN or advisory locks)
    and every statement runs in autocommit or a closed transaction.
    """


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: WAL is synced at every commit, so an issued certificate survives a power loss,
    # not only a killed process (NORMAL). bench/issue.py --count 2000, two runs each on a
    # shared 2-core VM: 1,108/1,160 (NORMAL) vs 1,335/966 (FULL) issuances/s at c=32, where
    # group commit shares one sync among many writers; within this machine's noise.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    # Freed cell space is zeroed within the pages being written anyway (no extra I/O):
    # a secret replaced in place (a plain-text EAB key sealed) leaves no copy behind.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


class Database:
    """One async SQLAlchemy engine plus schema migration."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 32,
        sslmode: str | None = None,
        sslrootcert: Path | None = None,
    ) -> None:
        """Open (lazily) the database at ``url``.

        Raises:
            ValueError: bad PostgreSQL TLS settings (``server.store.pgtls``).
        """
        # libpq TLS parameters (URL first, then sslmode/sslrootcert) become one SSL
        # context for every PostgreSQL connection, pooled by SQLAlchemy or raw.
        self._ssl: Any = None
        if not is_sqlite(url):
            tls = pgtls.from_url(url, sslmode=sslmode, sslrootcert=sslrootcert)
            url, self._ssl = tls.url, tls.ssl
        self.url = url
        pg_args: dict[str, Any] = {"timeout": _CONNECT_TIMEOUT}
        if self._ssl is not None:
            pg_args["ssl"] = self._ssl
        # Connections beyond pool_size are opened and closed per use (PostgreSQL:
        # a TLS probe each; SQLite: a new thread, file open and pragmas each):
        # size the pool for the concurrency actually served, and keep a small
        # overflow for bursts.
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size // 4,
            # An unreachable server fails fast instead of holding requests for a minute.
            **({} if is_sqlite(url) else {"connect_args": pg_args}),
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._pool_size = pool_size
        self._pg_pool: asyncpg.Pool | None = None
        self._pg_pool_lock = asyncio.Lock()
        self._discarded_at = -1.0
        # SQLite allows one writer: every repository of this process writes
        # behind one lock instead of spinning on SQLITE_BUSY.
        self.write_lock: asyncio.Lock | None = None
        self._reader: _SqliteReader | None = None
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.write_lock = asyncio.Lock()
            self._reader = _SqliteReader(self.engine.url.set(drivername="sqlite+pysqlite"))

    @property
    def is_sqlite(self) -> bool:
        """Return True when this is the embedded SQLite database."""
        return is_sqlite(self.url)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """Open one write transaction (on SQLite behind the process-wide write lock)."""
        async with self._guard():
            if self.write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self.write_lock, self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def connect(self, *, autocommit: bool = False) -> AsyncIterator[AsyncConnection]:
        """Open a connection (no transaction begun; ``autocommit``: each statement commits)."""
        async with (
            self._guard(),
            (self._autocommit if autocommit else self.engine).connect() as conn,
        ):
            yield conn

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Translate an outage in the block and discard every pooled connection after it."""
        try:
            async with outages.translated():
                yield
        except StorageUnavailableError:
            await self._discard_pools()
            raise

    async def _discard_pools(self) -> None:
        # A connection that lived through a server restart fails on first use (asyncpg:
        # "cannot switch to state 15"): new checkouts open fresh connections instead.
        # Connections checked out now are replaced when they come back. Once a second
        # at most: during an outage every request fails and the pools are empty anyway.
        now = time.monotonic()
        if now - self._discarded_at < 1.0:
            return
        self._discarded_at = now
        await self.engine.dispose()
        if self._pg_pool is not None:
            await self._pg_pool.expire_connections()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Open a connection for single-statement reads.

        Autocommit: no BEGIN before and no ROLLBACK after the statement, two
        round trips saved on every lookup.
        """
        async with self._guard(), self._autocommit.connect() as conn:
            yield conn

    async def fetch_all(self, stmt: Executable) -> Sequence[Row[Any]]:
        """Run one read statement (autocommit) and return all of its rows.

        A read that meets an outage is tried once more on a fresh connection: the
        first use of a pool that outlived a database restart fails, the second works.
        """
        try:
            return await self._fetch_all(stmt)
        except StorageUnavailableError:
            return await self._fetch_all(stmt)

    async def _fetch_all(self, stmt: Executable) -> Sequence[Row[Any]]:
        async with self._guard():
            if self._reader is None:
                async with self._autocommit.connect() as conn:
                    return (await conn.execute(stmt)).all()
            return await self._reader.fetch_all(stmt)

    async def fetch_first(self, stmt: Executable) -> Row[Any] | None:
        """Run one read statement and return its first row, or None."""
        rows = await self.fetch_all(stmt)
        return rows[0] if rows else None

    async def migrate(self) -> None:
        """Apply every pending Alembic migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    @contextlib.asynccontextmanager
    async def pg(self) -> AsyncIterator[Any]:
        """Yield a connection of the shared raw asyncpg pool (PostgreSQL only).

        Hot paths use asyncpg directly: about a third of the CPU of a Core
        statement (checkout, greenlet hop, compilation, result adaption).
        """
        async with self._guard(), self._pg_acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _pg_acquire(self) -> AsyncIterator[Any]:
        if self._pg_pool is None:
            async with self._pg_pool_lock:
                if self._pg_pool is None:
                    url = self.engine.url.set(drivername="postgresql")
                    self._pg_pool = await asyncpg.create_pool(
                        url.render_as_string(hide_password=False),
                        # No floor: asyncpg would keep reconnecting (and logging a
                        # traceback each time) while the database is away.
                        min_size=0,
                        max_size=self._pool_size,
                        command_timeout=30,
                        timeout=_CONNECT_TIMEOUT,
                        reset=_no_reset,
                        **({} if self._ssl is None else {"ssl": self._ssl}),
                    )
        async with self._pg_pool.acquire() as conn:
            yield conn

    def connections_in_use(self) -> int:
        """Return the connections checked out of this process's pools right now."""
        in_use = 0
        checkedout = getattr(self.engine.pool, "checkedout", None)
        if callable(checkedout):
            in_use += int(checkedout())
        if self._pg_pool is not None:
            in_use += self._pg_pool.get_size() - self._pg_pool.get_idle_size()
        return in_use

    async def close(self) -> None:
        """Dispose of every pooled connection."""
        if self._pg_pool is not None:
            await self._pg_pool.close()
            self._pg_pool = None
        await self.engine.dispose()
        if self._reader is not None:
            self._reader.close()


class _SqliteReader:
    """One thread running SQLite reads on the synchronous engine.

    aiosqlite hops to its thread for every cursor call (five to eight hops a
    statement: 0.5-1 ms of CPU a read on a 2-core VM); here a whole statement,
    compiled, executed and fetched, is one hop. WAL readers never wait for the
    writer, so one thread serves every read of the process.
    """

    def __init__(self, url: URL) -> None:
        self._engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="privca-sqlite-read")
        self._closed = False

    async def fetch_all(self, stmt: Executable) -> Sequence[Row[Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._fetch_all, stmt)

    def _fetch_all(self, stmt: Executable) -> Sequence[Row[Any]]:
        with self._engine.connect() as conn:
            return conn.execute(stmt).all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self._engine.dispose).result()
        self._thread.shutdown(wait=True)


def _upgrade(conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "heads")


class Batcher(Generic[_T, _R]):
    """Run what concurrent callers submit as one batch while the previous batch runs.

    ``run`` gets the items in order and returns, per item, its result or its own
    error. An item submitted while a batch is under way waits for the next one,
    so every caller's operation starts after its call (reads see what was
    committed before them; writes commit before their caller goes on).
    """

    _MAX_BATCH = 256

    def __init__(self, run: Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]]) -> None:
        self._run = run
        self._pending: list[tuple[_T, asyncio.Future[_R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: _T) -> _R:
        """Queue one item and wait for its result (or its own error)."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._MAX_BATCH]
            del self._pending[: self._MAX_BATCH]
            results: Sequence[_R | BaseException]
            try:
                results = await self._run([item for item, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class GroupCommit(Batcher[_T, None]):
    """Group commit: concurrent writers share one transaction.

    Every caller waits until its own item is committed (a certificate is stored
    before anyone sees it); under load one commit serves many writers. ``write``
    gets a batch and returns, per item, None (committed) or the item's error.
    """
