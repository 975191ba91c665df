"""The pure audit chain: canonical encoding, chaining, the verifier; the memory store chains too."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from server.ca import api, audit, keys
from server.ca.acme import types as at
from server.ca.audit import BreakKind, ChainHead, ChainVerifier
from server.ca.types import AuditEvent, Principal
from server.store.est_memory import MemoryEstRepository
from server.store.memory import MemoryAcmeRepository, MemoryAuditChain, MemoryRepository

T0 = datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=UTC)


def _event(i: int, **kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "at": T0 + timedelta(seconds=i),
        "actor": "operator:alice",
        "action": "x.do",
        "target": f"t{i}",
        "detail": {"b": "2", "a": "1"},
        "source": "cli@h",
    }
    fields.update(kw)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_canonical_encoding_is_the_documented_one() -> None:
    encoded = audit.canonical(_event(0), seq=7, prev_hash="ab" * 32)
    assert encoded == (
        b'{"action":"x.do","actor":"operator:alice","at":"2026-05-06T07:08:09.000010Z",'
        b'"detail":{"a":"1","b":"2"},"prev_hash":"' + b"ab" * 32 + b'","seq":7,'
        b'"source":"cli@h","target":"t0"}'
    )
    assert audit.record_hash(_event(0), seq=7, prev_hash="ab" * 32) == (
        hashlib.sha256(encoded).hexdigest()
    )


def test_time_zone_and_detail_order_do_not_change_the_hash() -> None:
    plus2 = timezone(timedelta(hours=2))
    moved = _event(0, at=T0.astimezone(plus2), detail={"a": "1", "b": "2"})
    (a,) = audit.chain([_event(0)], ChainHead())
    (b,) = audit.chain([moved], ChainHead())
    assert a.hash == b.hash
    assert b.at.tzinfo is UTC


def test_chain_links_and_every_field_is_covered() -> None:
    linked = audit.chain([_event(i) for i in range(3)], ChainHead(10, "cd" * 32))
    assert [e.seq for e in linked] == [11, 12, 13]
    assert linked[0].prev_hash == "cd" * 32
    assert [e.prev_hash for e in linked[1:]] == [e.hash for e in linked[:-1]]
    original = linked[1]
    for change in (
        {"at": original.at + timedelta(microseconds=1)},
        {"actor": "operator:bob"},
        {"action": "x.undo"},
        {"target": "other"},
        {"detail": {"a": "1"}},
        {"source": "10.0.0.9"},
    ):
        forged = dataclasses.replace(original, **change)
        assert audit.record_hash(forged, seq=12, prev_hash=original.prev_hash) != original.hash
    assert audit.record_hash(original, seq=13, prev_hash=original.prev_hash) != original.hash


def test_export_line_reverifies() -> None:
    (e,) = audit.chain([_event(0)], ChainHead())
    line = json.loads(audit.to_json(dataclasses.replace(e, id=1)))
    assert line["seq"] == 1
    assert line["prev_hash"] == audit.GENESIS
    keep = ("seq", "at", "actor", "action", "target", "detail", "source", "prev_hash")
    body = json.dumps({k: line[k] for k in keep}, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(body.encode()).hexdigest() == line["hash"]


def test_verifier_names_each_break() -> None:
    chain = audit.chain([_event(i) for i in range(5)], ChainHead())

    def first_break(records: list[AuditEvent], head: ChainHead) -> tuple[BreakKind, int] | None:
        v = ChainVerifier()
        for r in records:
            broken = v.feed(r)
            if broken is not None:
                return broken.kind, broken.seq
        end = v.finish(head)
        return None if end is None else (end.kind, end.seq)

    head = ChainHead(5, chain[-1].hash)
    assert first_break(chain, head) is None
    edited = [*chain[:2], dataclasses.replace(chain[2], target="x"), *chain[3:]]
    assert first_break(edited, head) == (BreakKind.EDITED, 3)
    assert first_break([*chain[:2], *chain[3:]], head) == (BreakKind.DELETED, 3)
    swapped = [
        *chain[:2],
        dataclasses.replace(chain[3], seq=3),
        dataclasses.replace(chain[2], seq=4),
        *chain[4:],
    ]
    assert first_break(swapped, head) == (BreakKind.REORDERED, 3)
    assert first_break(chain[:4], head) == (BreakKind.TRUNCATED, 5)
    assert first_break(chain, ChainHead(4, chain[3].hash)) == (BreakKind.HEAD, 5)
    assert first_break(chain, ChainHead(5, audit.GENESIS)) == (BreakKind.HEAD, 5)


async def test_memory_stores_share_one_chain(key_backend: keys.Pkcs8KeyBackend) -> None:
    chain = MemoryAuditChain()
    repo = MemoryRepository(chain)
    engine = api.CAEngine(repo, key_backend)
    acme, est = MemoryAcmeRepository(chain), MemoryEstRepository(chain)
    await engine.create_root("root", actor=Principal("operator", "alice", source="cli@h"))
    await acme.add_eab_key(
        at.EabKey(kid="k1", hmac_key=b"\x00" * 32, created_at=T0),
        audit=_event(1, action="acme.eab-create"),
    )
    await repo.add_audit(_event(2))
    n = len(chain.records)
    assert [e.seq for e in chain.records] == list(range(1, n + 1))
    assert [e.action for e in chain.records[-2:]] == ["acme.eab-create", "x.do"]
    assert chain.records is repo.audit is acme.audit is est.audit
    assert chain.records[0].source == "cli@h"
    result = await engine.verify_audit(page=2)
    assert (result.count, result.broken) == (n, None)
    chain.records[1] = dataclasses.replace(chain.records[1], target="forged")
    result = await engine.verify_audit(page=2)
    assert result.broken is not None
    assert (result.broken.kind, result.broken.seq) == (BreakKind.EDITED, 2)
