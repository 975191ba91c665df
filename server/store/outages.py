"""Storage outages: which driver errors mean "the database is unreachable", and their translation.

A refused or dropped connection, a server shutting down or not accepting
connections, a pool that cannot hand out a connection: each becomes the engine's
``StorageUnavailableError`` (a 503 with Retry-After at every front end, no
traceback), whatever driver raised it. Any other error passes unchanged: a bug
stays a bug. The engine sees only the typed error; nothing above ``server/store``
imports a driver.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc

from server.ca.errors import StorageUnavailableError

__all__ = ["is_outage", "translated"]

# SQLSTATEs of an unreachable or unwilling server (PostgreSQL Appendix A): class 08
# (connection exception) is matched by prefix.
_OUTAGE_STATES: Final = frozenset(
    {
        "57P01",  # admin_shutdown (pg_terminate_backend, fast shutdown)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, shutting down)
        "53300",  # too_many_connections
        "3D000",  # invalid_catalog_name: the database is gone or renamed
    }
)
_SQLITE_OUTAGES: Final = ("unable to open database file", "disk I/O error", "database is locked")


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen) or len(seen) > 16:
            continue
        seen.append(cur)
        todo += [cur.__cause__, getattr(cur, "orig", None)]
    return seen


def _is_outage_one(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within the pool timeout
        return True
    if isinstance(exc, OSError):  # refused, reset, unreachable, DNS, connect timeout
        return True
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.exceptions.InternalClientError):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state.startswith("08") or state in _OUTAGE_STATES:
            return True
        # ALTER DATABASE ... ALLOW_CONNECTIONS false (object_not_in_prerequisite_state)
        return state == "55000" and "not currently accepting connections" in str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc) for text in _SQLITE_OUTAGES)
    return False


def is_outage(exc: BaseException) -> bool:
    """Return True if ``exc`` (or what it wraps) says storage is unreachable."""
    if isinstance(exc, StorageUnavailableError):
        return True
    return any(_is_outage_one(e) for e in _causes(exc))


@contextlib.asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Re-raise a storage outage in the block as ``StorageUnavailableError``."""
    try:
        yield
    except StorageUnavailableError:
        raise
    except Exception as exc:
        if is_outage(exc):
            raise StorageUnavailableError() from exc
        raise
