"""SQL status repository on SQLite and PostgreSQL: responses, signers, CRL marks, leader lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.ca.status import ports as status_ports
from server.ca.types import (
    AuditEvent,
    CAId,
    CertificateRecord,
    CrlRecord,
    KeyHandle,
    RevocationReason,
    Serial,
)
from server.store.database import Database
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CA = CAId("ca0000000001")


def _resp(serial: int, *, at: datetime, status: str = "good") -> status_ports.StoredResponse:
    return status_ports.StoredResponse(
        ca_id=CA,
        serial=Serial(serial),
        der=b"der-%d-%s" % (serial, status.encode()),
        cert_status=status,
        this_update=at,
        next_update=at + timedelta(days=4),
        updated_at=at,
    )


async def test_put_get_upsert_and_changes(database: Database) -> None:
    store = SqlStatusRepository(database)
    big = (1 << 126) + 5
    await store.put_response(_resp(big, at=T0))
    await store.put_response(_resp(2, at=T0))
    got = await store.get_response(CA, Serial(big))
    assert got is not None
    assert got.der == b"der-%d-good" % big
    assert got.this_update == T0
    await store.put_response(_resp(big, at=T0 + timedelta(minutes=1), status="revoked"))
    got = await store.get_response(CA, Serial(big))
    assert got is not None
    assert got.cert_status == "revoked"
    assert await store.count_responses() == 2
    changed = await store.changed_since(T0, limit=10)
    assert [(c[0], c[1]) for c in changed] == [(CA, big)]
    assert await store.get_response(CA, Serial(3)) is None


async def test_stale_responses_skip_expired_certificates(database: Database) -> None:
    repo = SqlRepository(database)
    store = SqlStatusRepository(database)
    for serial, not_after in ((1, T0 + timedelta(days=30)), (2, T0 - timedelta(days=1))):
        await repo.add_certificate(
            CertificateRecord(
                ca_id=CA,
                serial=Serial(serial),
                der=b"x",
                profile="tls-server",
                subject="CN=x",
                sans=(),
                not_before=T0 - timedelta(days=60),
                not_after=not_after,
                issued_at=T0,
                requester="test",
            ),
            audit=AuditEvent(at=T0, actor="t", action="cert.issue", target="x"),
        )
        await store.put_response(_resp(serial, at=T0 - timedelta(days=3)))
    await store.put_response(_resp(3, at=T0))
    stale = await store.stale_responses(T0 - timedelta(days=2), valid_after=T0, limit=10)
    assert stale == [(CA, 1)]


async def test_signers_dirty_marks_and_revocations(database: Database) -> None:
    repo = SqlRepository(database)
    store = SqlStatusRepository(database)
    for n in (1, 2):
        await store.add_signer(
            status_ports.SignerRecord(
                ca_id=CA,
                serial=Serial(n),
                cert_der=b"cert%d" % n,
                key=KeyHandle(backend="pkcs8", ref=f"k{n}", blob=b"blob"),
                not_before=T0,
                not_after=T0 + timedelta(days=30),
                created_at=T0 + timedelta(hours=n),
            )
        )
    current = await store.current_signer(CA)
    assert current is not None
    assert current.serial == 2
    assert current.key.ref == "k2"
    assert await store.current_signer(CAId("other")) is None
    assert [s.key.ref for s in await store.list_signers(CA)] == ["k1", "k2"]
    assert await store.list_signers(CAId("other")) == []
    gone = AuditEvent(at=T0, actor="t", action="ocsp.signer-key-destroy", target="ca/1")
    assert await store.remove_signer(CA, Serial(1), audit=gone)
    assert not await store.remove_signer(CA, Serial(1), audit=gone)
    # One record: a removal that finds no row records nothing.
    assert [e.action for e in await repo.list_audit()] == ["ocsp.signer-key-destroy"]
    assert [s.serial for s in await store.list_signers(CA)] == [2]

    await store.mark_crl_dirty(CA, T0)
    await store.mark_crl_dirty(CA, T0 + timedelta(seconds=5))
    assert await store.dirty_crls() == [(CA, T0 + timedelta(seconds=5))]
    await store.clear_crl_dirty(CA, up_to=T0 + timedelta(seconds=1))
    assert await store.dirty_crls() != []  # a later revocation keeps the mark
    await store.clear_crl_dirty(CA, up_to=T0 + timedelta(seconds=5))
    assert await store.dirty_crls() == []

    for serial in (10, 11):
        await repo.add_certificate(
            CertificateRecord(
                ca_id=CA,
                serial=Serial(serial),
                der=b"x",
                profile="tls-server",
                subject="CN=x",
                sans=(),
                not_before=T0,
                not_after=T0 + timedelta(days=1),
                issued_at=T0,
                requester="test",
            ),
            audit=AuditEvent(at=T0, actor="t", action="cert.issue", target="x"),
        )
    await repo.revoke_certificate(
        CA,
        Serial(10),
        at=T0,
        reason=RevocationReason.KEY_COMPROMISE,
        audit=AuditEvent(at=T0, actor="t", action="cert.revoke", target="x"),
    )
    assert await store.list_revocations(CA) == [
        status_ports.RevokedEntry(
            serial=10, revoked_at=int(T0.timestamp()), reason=RevocationReason.KEY_COMPROMISE
        )
    ]


async def test_leader_lock_is_exclusive(database: Database) -> None:
    store = SqlStatusRepository(database)
    # a second repository stands for another node (PostgreSQL: another session)
    other = SqlStatusRepository(Database(database.url)) if not database.is_sqlite else store
    try:
        async with store.leader("crl:x") as first:
            assert first is True
            async with other.leader("crl:x") as second:
                assert second is False
            async with other.leader("crl:y") as unrelated:
                assert unrelated is True
        async with other.leader("crl:x") as again:
            assert again is True
    finally:
        if other is not store:
            await other._db.close()


async def test_latest_crl_info(database: Database) -> None:
    repo = SqlRepository(database)
    store = SqlStatusRepository(database)
    assert await store.latest_crl_info(CA) is None
    for n in (1, 2):
        await repo.add_crl(
            CrlRecord(
                ca_id=CA,
                number=n,
                this_update=T0 + timedelta(hours=n),
                next_update=T0 + timedelta(days=1),
                der=b"crl",
            ),
            audit=AuditEvent(at=T0, actor="test", action="crl.generate", target="ca"),
        )
    assert await store.latest_crl_info(CA) == (2, T0 + timedelta(hours=2))
