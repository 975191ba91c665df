"""A throwaway PostgreSQL database for one bench run (created empty, dropped after)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def fresh_database(url: str) -> AsyncIterator[str]:
    """Yield the postgresql+asyncpg URL of a new, empty database on ``url``'s server.

    ``url`` names any database the bench may connect to (e.g. ``postgres``); the
    new one is dropped (WITH FORCE) when the block ends, however it ends.
    """
    admin = url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"privca_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield (
            "postgresql+asyncpg://"
            + admin.removeprefix("postgresql://").rsplit("/", 1)[0]
            + "/"
            + name
        )
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
