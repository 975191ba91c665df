"""The one way audit records reach the database: appended to the hash chain.

``append`` (SQLAlchemy connection) and ``append_pg`` (raw asyncpg, the group-commit
hot path) run inside the caller's write transaction. Both first lock the one-row
chain head: on PostgreSQL a row lock (``FOR UPDATE`` in ``append_pg``, the first
UPDATE in ``append``) serialises every writer on every node until its transaction
ends; on SQLite ``append`` moves the head with ``UPDATE ... RETURNING``, the
statement that takes the write lock, so the head is read inside it and never from
a stale snapshot. Then the records are numbered and hashed
(``server.ca.audit.chain``), inserted, and the head gets the last hash. Only this
module inserts into ``audit_log``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.ca import audit, types
from server.store import convert
from server.store.models import AuditHeadRow, AuditRow

__all__ = ["append", "append_pg", "head_of", "head_stmt", "read_page_stmt", "to_domain"]

_AUDIT = cast(Table, AuditRow.__table__)
_HEAD = cast(Table, AuditHeadRow.__table__)
_HEAD_ID: Final = 1

_COLUMNS: Final = (
    "seq", "at", "actor", "action", "target", "detail", "source", "prev_hash", "hash",
)  # fmt: skip
# One round trip for the whole batch: the rows (as arrays) and the head's new hash.
# A data-modifying WITH runs whether or not the outer statement reads it.
_APPEND_SQL: Final = (
    "WITH rows AS (INSERT INTO audit_log"  # noqa: S608 - fixed names
    f" ({', '.join(_COLUMNS)})"
    " SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],"
    " $5::text[], $6::json[], $7::text[], $8::text[], $9::text[]))"
    " UPDATE audit_chain_head SET seq = $10, hash = $11 WHERE id = 1"
)
# Row lock without a new row version: the head is rewritten once, by the append.
_LOCK_SQL: Final = "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE"


def _values(event: types.AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": dict(event.detail),
        "source": event.source,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


async def append(conn: AsyncConnection, events: Sequence[types.AuditEvent]) -> None:
    """Append ``events`` to the chain inside ``conn``'s open write transaction."""
    if not events:
        return
    advanced = (
        await conn.execute(
            update(_HEAD)
            .where(_HEAD.c.id == _HEAD_ID)
            .values(seq=_HEAD.c.seq + len(events))
            .returning(_HEAD.c.seq, _HEAD.c.hash)
        )
    ).one()
    linked = audit.chain(events, audit.ChainHead(int(advanced.seq) - len(events), advanced.hash))
    await conn.execute(insert(_AUDIT), [_values(e) for e in linked])
    await conn.execute(update(_HEAD).where(_HEAD.c.id == _HEAD_ID).values(hash=linked[-1].hash))


async def append_pg(pg: Any, events: Sequence[types.AuditEvent]) -> None:
    """Append ``events`` on a raw asyncpg connection inside its open transaction."""
    if not events:
        return
    head = await pg.fetchrow(_LOCK_SQL)
    linked = audit.chain(events, audit.ChainHead(int(head[0]), head[1]))
    await pg.execute(
        _APPEND_SQL,
        [e.seq for e in linked],
        [e.at for e in linked],
        [e.actor for e in linked],
        [e.action for e in linked],
        [e.target for e in linked],
        [json.dumps(e.detail) for e in linked],
        [e.source for e in linked],
        [e.prev_hash for e in linked],
        [e.hash for e in linked],
        linked[-1].seq,
        linked[-1].hash,
    )


def to_domain(row: Row[Any]) -> types.AuditEvent:
    """Return the engine type of an ``audit_log`` row."""
    return types.AuditEvent(
        id=row.id,
        at=convert.aware(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=dict(row.detail),
        source=row.source,
        seq=row.seq,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def read_page_stmt(after_seq: int, limit: int) -> Any:
    """Return the statement reading up to ``limit`` records after ``after_seq`` in seq order."""
    return select(_AUDIT).where(_AUDIT.c.seq > after_seq).order_by(_AUDIT.c.seq).limit(limit)


def head_stmt() -> Any:
    """Return the statement reading the chain head."""
    return select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID)


def head_of(row: Row[Any] | None) -> audit.ChainHead:
    """Return the chain head of a ``head_stmt`` row (an absent row is an empty chain)."""
    return audit.ChainHead() if row is None else audit.ChainHead(int(row.seq), row.hash)
