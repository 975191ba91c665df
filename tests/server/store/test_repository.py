"""SqlRepository on SQLite and PostgreSQL: the same contract as the in-memory fake."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from server.ca import api, grants, keys
from server.ca.ports import Repository, SerialConflictError
from server.ca.status import crls
from server.ca.types import (
    AuditEvent,
    CAStatus,
    CertificateRecord,
    CertQuery,
    CertStatus,
    KeyAlgorithm,
    KeyHandle,
    Principal,
    RevocationReason,
    Serial,
)
from server.store.database import Database
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository
from server.store.status_repository import SqlStatusRepository
from tests.support import make_csr, openssl_verify

OP = Principal("operator", "test")


async def _hierarchy(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)


async def test_round_trip_of_cas_and_certificates(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    await _hierarchy(sql_engine)
    cas = await sql_repo.list_cas()
    assert [c.name for c in cas] == ["root", "issuing"]
    issuing = cas[1]
    assert issuing.parent_id == cas[0].id
    assert issuing.chain_der == (cas[0].cert_der,)
    assert issuing.created_at.tzinfo is not None
    csr, _ = make_csr(["dns:db.internal", "ip:10.0.0.5"])
    issued = await sql_engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    rec = await sql_repo.get_certificate(issuing.id, issued.record.serial)
    assert rec == issued.record
    assert openssl_verify(issued.certificate, issued.chain).returncode == 0
    found = await sql_repo.list_certificates(CertQuery(text="10.0.0.5"))
    assert [r.serial for r in found] == [issued.record.serial]
    assert await sql_repo.list_certificates(CertQuery(status=CertStatus.REVOKED)) == []
    expiring = await sql_repo.list_certificates(
        CertQuery(ca_id=issuing.id, expires_before=datetime.now(UTC) + timedelta(days=91))
    )
    assert len(expiring) == 1


async def _first_leaf(engine: api.CAEngine) -> CertificateRecord:
    """Create the hierarchy and issue one tls-server leaf."""
    await _hierarchy(engine)
    csr, _ = make_csr()
    return (
        await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    ).record


async def test_duplicate_serial_is_refused_by_the_database(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    issued = await _first_leaf(sql_engine)
    event = AuditEvent(at=datetime.now(UTC), actor="t", action="cert.issue", target="x")
    with pytest.raises(SerialConflictError):
        await sql_repo.add_certificate(issued, audit=event)
    # Nothing half-written: the audit row of the failed insert rolled back too.
    assert all(e.target != "x" for e in await sql_repo.list_audit(limit=100))


async def test_one_conflict_in_a_batch_fails_alone(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    """Concurrent inserts share a transaction; a duplicate fails alone, the rest commit."""
    issued = await _first_leaf(sql_engine)
    fresh = [dataclasses.replace(issued, serial=Serial((1 << 90) + i)) for i in range(6)]
    records = [*fresh[:3], issued, *fresh[3:]]
    events = [
        AuditEvent(at=datetime.now(UTC), actor="t", action="cert.issue", target=f"batch-{i}")
        for i in range(len(records))
    ]
    results = await asyncio.gather(
        *[sql_repo.add_certificate(r, audit=e) for r, e in zip(records, events, strict=True)],
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None)] * 3 + [SerialConflictError] + [type(None)] * 3
    for rec in fresh:
        assert await sql_repo.get_certificate(rec.ca_id, rec.serial) == rec
    targets = {e.target for e in await sql_repo.list_audit(limit=100)}
    assert {f"batch-{i}" for i in (0, 1, 2, 4, 5, 6)} <= targets
    assert "batch-3" not in targets


async def test_concurrent_status_reads_each_get_their_own_answer(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    """Concurrent status reads share one statement; each caller gets its own row's status."""
    await _hierarchy(sql_engine)
    root, issuing = await sql_engine.get_ca("root"), await sql_engine.get_ca("issuing")
    issued = [
        (
            await sql_engine.issue(
                make_csr()[0], grant=grants.OPERATOR, principal=OP, profile="tls-server"
            )
        ).record
        for _ in range(4)
    ]
    await sql_engine.revoke(issued[1].serial, principal=OP)
    asks = [(issuing.id, r.serial) for r in issued] * 3 + [
        (issuing.id, Serial(12345)),  # unknown serial
        (root.id, issued[0].serial),  # right serial, other CA
    ]
    answers = await asyncio.gather(*[sql_repo.certificate_status(ca, sn) for ca, sn in asks])
    good, revoked = CertStatus.VALID, CertStatus.REVOKED
    assert answers == [good, revoked, good, good] * 3 + [None, None]
    # A read that starts after a revocation sees it.
    await sql_engine.revoke(issued[2].serial, principal=OP)
    assert await sql_repo.certificate_status(issuing.id, issued[2].serial) is revoked


async def test_serial_collision_is_retried(
    sql_repo: SqlRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    values = iter([1 << 70, 1 << 80, 1 << 80, 1 << 80, 1 << 81])

    def serials() -> Serial:
        return Serial(next(values))

    engine = api.CAEngine(
        sql_repo, key_backend, settings=api.EngineSettings(default_ca="issuing"), serials=serials
    )
    await _hierarchy(engine)  # the root takes 1<<70, the issuing CA 1<<80 (under root)
    csr, _ = make_csr()
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    # 1<<80 was taken by the issuing CA's own record under root, not under issuing:
    # serials are unique per issuer, so the leaf may reuse it.
    assert issued.record.serial == 1 << 80
    again = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert again.record.serial == 1 << 81  # the duplicate 1<<80 was retried


async def test_200_concurrent_issuances_get_unique_serials(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    await _hierarchy(sql_engine)
    csrs = [make_csr([f"dns:n{i}.internal"])[0] for i in range(200)]
    results = await asyncio.gather(
        *(
            sql_engine.issue(c, grant=grants.OPERATOR, principal=OP, profile="tls-server")
            for c in csrs
        )
    )
    serials = {r.record.serial for r in results}
    assert len(serials) == 200
    issuing = await sql_engine.get_ca("issuing")
    stored = await sql_repo.list_certificates(CertQuery(ca_id=issuing.id, limit=1000))
    assert {r.serial for r in stored} == serials


async def test_revocation_crl_numbers_and_audit(
    sql_engine: api.CAEngine, sql_repo: SqlRepository, database: Database
) -> None:
    await _hierarchy(sql_engine)
    csr, _ = make_csr()
    issued = await sql_engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    issuing = await sql_engine.get_ca("issuing")
    assert await sql_repo.certificate_status(issuing.id, issued.record.serial) is (CertStatus.VALID)
    rec = await sql_engine.revoke(
        issued.record.serial, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    assert rec.status is CertStatus.REVOKED
    assert await sql_engine.certificate_status(issuing.id, rec.serial) is CertStatus.REVOKED
    assert await sql_repo.certificate_status(issuing.id, Serial(rec.serial + 1)) is None
    assert rec.revoked_at is not None
    assert rec.revoked_at.tzinfo is not None
    again = await sql_repo.revoke_certificate(
        issuing.id,
        rec.serial,
        at=datetime.now(UTC),
        reason=RevocationReason.UNSPECIFIED,
        audit=AuditEvent(at=datetime.now(UTC), actor="t", action="cert.revoke", target="y"),
    )
    assert again is None
    numbers = await asyncio.gather(*(sql_repo.next_crl_number(issuing.id) for _ in range(20)))
    assert sorted(numbers) == list(range(1, 21))
    publisher = crls.CrlPublisher(sql_engine, sql_repo, SqlStatusRepository(database))
    crl = await publisher.regenerate(issuing, actor=str(OP))
    assert crl is not None
    assert crl.number == 21
    latest = await sql_repo.latest_crl(issuing.id)
    assert latest is not None
    assert latest.der == crl.der
    assert latest.next_update.tzinfo is not None
    actions = [e.action for e in await sql_repo.list_audit(limit=10)]
    assert actions[0] == "crl.generate"
    assert "cert.revoke" in actions


async def test_meta_values(sql_repo: SqlRepository) -> None:
    assert await sql_repo.get_meta("k") is None
    await sql_repo.set_meta("k", "v1")
    await sql_repo.set_meta("k", "v2")
    assert await sql_repo.get_meta("k") == "v2"


@pytest.fixture
def rsa_only() -> KeyAlgorithm:
    return KeyAlgorithm.RSA_2048


async def test_key_blob_is_encrypted_at_rest(
    sql_engine: api.CAEngine, sql_repo: SqlRepository, rsa_only: KeyAlgorithm
) -> None:
    ca = await sql_engine.create_root("enc", actor=OP, key_algorithm=rsa_only)
    stored = await sql_repo.get_ca(ca.id)
    assert stored is not None
    assert stored.key.blob.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    wrong = keys.Pkcs8KeyBackend(b"another-passphrase-of-length")
    with pytest.raises(Exception, match="wrong passphrase"):
        wrong.load(stored.key)


async def _check_update_ca_is_compare_and_set(engine: api.CAEngine, repo: Repository) -> None:
    await _hierarchy(engine)
    issuing = await engine.get_ca("issuing")
    assert issuing.status is CAStatus.ACTIVE
    event = AuditEvent(at=issuing.created_at, actor="test", action="ca.test", target="issuing")
    v = issuing.version
    offline = dataclasses.replace(issuing, offline=True)
    audits = len(await repo.list_audit(limit=1000))
    # A write naming a version that is not the stored one changes nothing, audits nothing.
    assert not await repo.update_ca(offline, expected_version=v + 1, audit=event)
    assert await repo.get_ca(issuing.id) == issuing
    assert len(await repo.list_audit(limit=1000)) == audits
    assert await repo.update_ca(offline, expected_version=v, audit=event)
    # Stored with the next version, whatever version the written copy carried.
    assert await repo.get_ca(issuing.id) == dataclasses.replace(offline, version=v + 1)
    assert len(await repo.list_audit(limit=1000)) == audits + 1
    # The status did not change, yet a second writer that read version v (still ACTIVE,
    # online) loses: it would turn the offline flag back off.
    disabled = dataclasses.replace(issuing, status=CAStatus.DISABLED)
    assert not await repo.update_ca(disabled, expected_version=v, audit=event)
    stored = await repo.get_ca(issuing.id)
    assert stored is not None
    assert (stored.status, stored.offline, stored.version) == (CAStatus.ACTIVE, True, v + 1)
    # A key swap (re-wrapping) is an update too: a write that read before it loses.
    rewrapped = KeyHandle(backend=stored.key.backend, ref=stored.key.ref, blob=b"rewrapped")
    assert await repo.replace_ca_key(stored.id, old=stored.key, new=rewrapped, audit=event)
    assert not await repo.update_ca(disabled, expected_version=v + 1, audit=event)
    stored = await repo.get_ca(issuing.id)
    assert stored is not None
    assert (stored.key, stored.version) == (rewrapped, v + 2)
    assert len(await repo.list_audit(limit=1000)) == audits + 2


async def test_update_ca_is_compare_and_set(
    sql_engine: api.CAEngine, sql_repo: SqlRepository
) -> None:
    await _check_update_ca_is_compare_and_set(sql_engine, sql_repo)


async def test_memory_update_ca_is_compare_and_set(
    engine: api.CAEngine, memory_repo: MemoryRepository
) -> None:
    await _check_update_ca_is_compare_and_set(engine, memory_repo)
