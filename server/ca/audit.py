"""The audit trail's hash chain: canonical record encoding, chaining and verification.

Every audit record carries a sequence number, the hash of the record before it and
its own hash: SHA-256 over a canonical JSON encoding of seq, time (UTC,
microseconds), actor, action, target, detail (keys sorted), source and prev_hash.
Storage appends through ``chain`` while it holds the chain head; ``ChainVerifier``
walks the records in seq order, one page at a time, and names the first record
that was edited, deleted or reordered. Pure: no I/O. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from server.ca.types import AuditEvent

__all__ = [
    "GENESIS",
    "BreakKind",
    "ChainBreak",
    "ChainHead",
    "ChainVerifier",
    "Verification",
    "canonical",
    "chain",
    "record_hash",
    "to_json",
]

# prev_hash of the first record (and the head of an empty chain).
GENESIS: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record appended: its seq and hash (seq 0 and ``GENESIS`` when empty)."""

    seq: int = 0
    hash: str = GENESIS


def _at(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: AuditEvent, *, seq: int, prev_hash: str) -> bytes:
    """Return the bytes hashed for ``event`` at ``seq`` after ``prev_hash``."""
    doc = {
        "seq": seq,
        "at": _at(event.at),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": {str(k): str(v) for k, v in event.detail.items()},
        "source": event.source,
        "prev_hash": prev_hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(event: AuditEvent, *, seq: int, prev_hash: str) -> str:
    """Return the hex SHA-256 of ``event``'s canonical encoding."""
    return hashlib.sha256(canonical(event, seq=seq, prev_hash=prev_hash)).hexdigest()


def chain(events: Sequence[AuditEvent], head: ChainHead) -> list[AuditEvent]:
    """Return ``events`` numbered and hashed after ``head`` (times normalised to UTC).

    The caller stores them and moves the head to the last one in the same
    transaction in which it read ``head``.
    """
    out: list[AuditEvent] = []
    seq, prev = head.seq, head.hash
    for event in events:
        seq += 1
        fixed = replace(
            event,
            at=event.at.astimezone(UTC),
            detail={str(k): str(v) for k, v in event.detail.items()},
        )
        digest = record_hash(fixed, seq=seq, prev_hash=prev)
        out.append(replace(fixed, seq=seq, prev_hash=prev, hash=digest))
        prev = digest
    return out


def to_json(event: AuditEvent) -> str:
    """Return one export line: every hashed field plus seq, prev_hash and hash."""
    return json.dumps(
        {
            "seq": event.seq,
            "id": event.id,
            "at": _at(event.at),
            "actor": event.actor,
            "action": event.action,
            "target": event.target,
            "detail": dict(sorted(event.detail.items())),
            "source": event.source,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


class BreakKind(StrEnum):
    """How a chain was found broken."""

    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    HEAD = "head"


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first bad record: its seq (and row id when it exists) and what is wrong."""

    kind: BreakKind
    seq: int
    id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"record seq {self.seq}" + (f" (id {self.id})" if self.id is not None else "")
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of walking a chain: records found intact and the first break."""

    count: int
    broken: ChainBreak | None


class ChainVerifier:
    """Walk a chain record by record in seq order; stop at the first break."""

    def __init__(self) -> None:
        self.count = 0
        self._last = ChainHead()

    @property
    def last(self) -> ChainHead:
        """Return the last record verified (seq 0 before the first)."""
        return self._last

    def feed(self, event: AuditEvent) -> ChainBreak | None:
        """Check the next record; return the break it shows, if any."""
        expected = self._last.seq + 1
        if event.seq is None or event.seq > expected:
            missing = (
                f"seq {expected}"
                if event.seq in (None, expected + 1)
                else f"seq {expected}..{(event.seq or 0) - 1}"
            )
            return ChainBreak(
                BreakKind.DELETED,
                expected,
                None,
                f"{missing} missing (the next stored record is seq {event.seq}, id {event.id})",
            )
        if event.seq < expected:
            return ChainBreak(
                BreakKind.REORDERED,
                event.seq,
                event.id,
                f"seq {event.seq} appears again after seq {self._last.seq}",
            )
        if event.prev_hash != self._last.hash:
            return ChainBreak(
                BreakKind.REORDERED,
                event.seq,
                event.id,
                f"prev_hash does not match the hash of seq {self._last.seq}: the record was "
                "moved, or the one before it was rewritten",
            )
        if record_hash(event, seq=event.seq, prev_hash=event.prev_hash) != event.hash:
            return ChainBreak(
                BreakKind.EDITED,
                event.seq,
                event.id,
                "its content does not match its hash",
            )
        self.count += 1
        self._last = ChainHead(event.seq, event.hash)
        return None

    def finish(self, head: ChainHead) -> ChainBreak | None:
        """Compare the walked chain's end with the stored head (a cut tail shows here)."""
        last = self._last
        if head.seq > last.seq:
            return ChainBreak(
                BreakKind.TRUNCATED,
                last.seq + 1,
                None,
                f"the head says {head.seq} records but the chain ends at seq {last.seq}",
            )
        if head.seq < last.seq:
            return ChainBreak(
                BreakKind.HEAD,
                head.seq + 1,
                None,
                f"records after the head (seq {head.seq}) up to seq {last.seq}",
            )
        if head.hash != last.hash:
            return ChainBreak(
                BreakKind.HEAD,
                last.seq,
                None,
                "the head's hash differs from the last record's",
            )
        return None
