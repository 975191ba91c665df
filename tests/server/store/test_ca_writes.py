"""A CA write and its certificate record commit together or not at all.

Creating a CA (its row and its certificate in the issuer's inventory), renewing one
(the compare-and-set update and the new certificate's record) and revoking a sub-CA
(its certificate at the parent and the CA) are each one transaction with both audit
records: a failure in any of their statements leaves none of them. Checked on the
memory fake and on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from server.ca import api, keys, types
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Repository, random_serial
from server.ca.types import (
    CA,
    AuditEvent,
    CAStatus,
    CertificateRecord,
    CertQuery,
    CertStatus,
    Principal,
    RevocationReason,
    Serial,
)
from server.store.database import Database
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository
from tests.support import TEST_KDF_ROUNDS, TEST_PASSPHRASE, InjectedError, failing_statements

OP = Principal("operator", "test")


class _Serials:
    """The engine's serial source; ``pinned`` is drawn once, then random serials again."""

    def __init__(self) -> None:
        self.pinned: int | None = None

    def __call__(self) -> Serial:
        pinned, self.pinned = self.pinned, None
        return Serial(pinned) if pinned is not None else random_serial()


@dataclasses.dataclass(frozen=True)
class _State:
    """Everything a CA write can touch: CA rows, certificate records, the audit chain."""

    cas: frozenset[CA]
    certs: frozenset[CertificateRecord]
    audit: tuple[AuditEvent, ...]


async def _state(repo: Repository) -> _State:
    cas = list(await repo.list_cas())
    certs = [r for ca in cas for r in await repo.list_certificates(CertQuery(ca_id=ca.id))]
    audit = tuple(await repo.audit_page(after_seq=0, limit=1000))
    assert (await repo.audit_head()).seq == len(audit)
    return _State(frozenset(cas), frozenset(certs), audit)


async def _tree(repo: Repository) -> tuple[api.CAEngine, _Serials]:
    serials = _Serials()
    backend = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS)
    engine = api.CAEngine(repo, backend, serials=serials)
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP)
    return engine, serials


async def _ca(repo: Repository, name: str) -> CA:
    found = await repo.get_ca_by_name(name)
    assert found is not None
    return found


# ------------------------------------------------------------ engine: a taken serial


async def _sub_ca_with_a_taken_serial(repo: Repository) -> None:
    engine, serials = await _tree(repo)
    before = await _state(repo)
    # root already has a record with issuing's serial: the new CA's record cannot go in.
    serials.pinned = (await _ca(repo, "issuing")).certificate.serial_number
    with pytest.raises(EngineError) as err:
        await engine.create_subordinate("second", parent="root", actor=OP)
    assert err.value.kind is ProblemKind.SERVER_INTERNAL
    assert "nothing was stored" in err.value.detail
    assert await repo.get_ca_by_name("second") is None
    assert await _state(repo) == before
    # The name stays free: the command run again succeeds.
    await engine.create_subordinate("second", parent="root", actor=OP)


async def _renew_with_a_taken_serial(repo: Repository) -> None:
    engine, serials = await _tree(repo)
    for name in ("issuing", "root"):
        before = await _state(repo)
        # The CA's current serial is taken under its issuer (a root issues its own).
        serials.pinned = (await _ca(repo, name)).certificate.serial_number
        with pytest.raises(EngineError) as err:
            await engine.renew_ca(name, actor=OP)
        assert err.value.kind is ProblemKind.SERVER_INTERNAL
        # The old certificate and CA version stay; no ca.renew, no cert.issue.
        assert await _state(repo) == before, name
    renewal = await engine.renew_ca("issuing", actor=OP)
    root = await _ca(repo, "root")
    stored = await repo.get_certificate(root.id, Serial(renewal.certificate.serial_number))
    assert stored is not None
    assert stored.is_ca


ENGINE_CHECKS = [
    pytest.param(_sub_ca_with_a_taken_serial, id="fail/create-sub-taken-serial"),
    pytest.param(_renew_with_a_taken_serial, id="fail/renew-taken-serial"),
]
Check = Callable[[Repository], Awaitable[None]]


@pytest.mark.parametrize("check", ENGINE_CHECKS)
async def test_memory_engine(check: Check) -> None:
    await check(MemoryRepository())


@pytest.mark.parametrize("check", ENGINE_CHECKS)
async def test_sql_engine(check: Check, database: Database) -> None:
    await check(SqlRepository(database))


# ------------------------------------------------------------ engine: a failing statement


async def _create_root(engine: api.CAEngine) -> object:
    return await engine.create_root("other", actor=OP)


async def _create_sub(engine: api.CAEngine) -> object:
    return await engine.create_subordinate("other", parent="issuing", actor=OP)


async def _renew(engine: api.CAEngine) -> object:
    return await engine.renew_ca("issuing", actor=OP)


async def _revoke_sub(engine: api.CAEngine) -> object:
    return await engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)


# Each write's statements in the order the repository runs them: a failure in the
# first, in a later one (after the CA row is written) and in the audit append.
_FAILURES = [
    pytest.param(_create_root, "INSERT INTO CERTIFICATES", id="create-root/cert-insert"),
    pytest.param(_create_root, "INSERT INTO AUDIT_LOG", id="create-root/audit-append"),
    pytest.param(_create_sub, "INSERT INTO CERTIFICATES", id="create-sub/cert-insert"),
    pytest.param(_renew, "INSERT INTO CERTIFICATES", id="renew/cert-insert"),
    pytest.param(_renew, "INSERT INTO AUDIT_LOG", id="renew/audit-append"),
    pytest.param(_revoke_sub, "UPDATE CAS", id="revoke-sub/ca-update"),
    pytest.param(_revoke_sub, "UPDATE CERTIFICATES", id="revoke-sub/cert-update"),
    pytest.param(_revoke_sub, "INSERT INTO AUDIT_LOG", id="revoke-sub/audit-append"),
]


@pytest.mark.parametrize(("write", "statement"), _FAILURES)
async def test_a_failing_statement_leaves_nothing(
    database: Database,
    write: Callable[[api.CAEngine], Awaitable[object]],
    statement: str,
) -> None:
    repo = SqlRepository(database)
    engine, _ = await _tree(repo)
    before = await _state(repo)
    with failing_statements(database, statement), pytest.raises(InjectedError):
        await write(engine)
    assert await _state(repo) == before
    verified = await engine.verify_audit()
    assert (verified.count, verified.broken) == (len(before.audit), None)
    # Nothing half-done blocks the command run again.
    await write(engine)


class _FailingCAWrite(MemoryRepository):
    """Fails the CA write of one action (after the engine has decided everything)."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action

    async def update_ca(
        self, ca: CA, *, expected_version: int, audit: AuditEvent, **writes: Any
    ) -> bool:
        if audit.action == self.action:
            raise InjectedError(audit.action)
        return await super().update_ca(ca, expected_version=expected_version, audit=audit, **writes)


async def test_memory_sub_ca_revocation_is_one_write() -> None:
    repo = _FailingCAWrite("ca.revoke")
    engine, _ = await _tree(repo)
    before = await _state(repo)
    with pytest.raises(InjectedError):
        await _revoke_sub(engine)
    # The certificate at the parent is not revoked without the CA.
    assert await _state(repo) == before


# ------------------------------------------------------------ the repository port


async def _port_writes_all_or_nothing(repo: Repository) -> None:
    engine, _ = await _tree(repo)
    root, issuing = await _ca(repo, "root"), await _ca(repo, "issuing")
    record = await repo.get_certificate(root.id, Serial(issuing.certificate.serial_number))
    assert record is not None
    now = datetime.now(UTC)

    def audit(action: str, target: str) -> AuditEvent:
        return AuditEvent(at=now, actor="test", action=action, target=target)

    fresh = CertificateRecord(
        ca_id=root.id,
        serial=Serial(record.serial + 1),
        der=b"der",
        profile="ca",
        subject="CN=x",
        sans=(),
        not_before=now,
        not_after=now,
        issued_at=now,
        requester="test",
        is_ca=True,
    )
    issue = types.CertificateInsert(fresh, audit("cert.issue", "root/x"))
    before = await _state(repo)
    # A taken name: neither the CA nor its certificate record.
    with pytest.raises(EngineError) as err:
        await repo.add_ca(
            dataclasses.replace(issuing, id=types.CAId(root.id + "-x")),
            audit=audit("ca.create-sub", "issuing"),
            certificate=issue,
        )
    assert err.value.kind is ProblemKind.CONFLICT
    assert await _state(repo) == before
    # A stale version: no certificate record either.
    renewed = dataclasses.replace(issuing, chain_der=())
    stale = issuing.version + 1
    assert not await repo.update_ca(
        renewed, expected_version=stale, audit=audit("ca.renew", "issuing"), certificate=issue
    )
    assert await _state(repo) == before
    # A certificate no longer VALID: the CA is not written.
    revoked = await engine.revoke(record.serial, principal=OP, ca=root.id)
    before = await _state(repo)
    revocation = types.CertificateRevocation(
        record, at=now, reason=RevocationReason.SUPERSEDED, audit=audit("cert.revoke", "x")
    )
    assert not await repo.update_ca(
        dataclasses.replace(issuing, status=CAStatus.REVOKED),
        expected_version=issuing.version,
        audit=audit("ca.revoke", "issuing"),
        revocation=revocation,
    )
    assert await _state(repo) == before
    assert revoked.status is CertStatus.REVOKED
    # Both at once: the CA first, then its certificate, in the audit chain too.
    assert await repo.update_ca(
        renewed,
        expected_version=issuing.version,
        audit=audit("ca.renew", "issuing"),
        certificate=issue,
    )
    after = await _state(repo)
    assert [(e.action, e.target) for e in after.audit[len(before.audit) :]] == [
        ("ca.renew", "issuing"),
        ("cert.issue", "root/x"),
    ]
    assert await repo.get_certificate(root.id, fresh.serial) == fresh
    assert (await _ca(repo, "issuing")).version == issuing.version + 1


PORT_CHECKS = [pytest.param(_port_writes_all_or_nothing, id="port")]


@pytest.mark.parametrize("check", PORT_CHECKS)
async def test_memory_port(check: Check) -> None:
    await check(MemoryRepository())


@pytest.mark.parametrize("check", PORT_CHECKS)
async def test_sql_port(check: Check, database: Database) -> None:
    await check(SqlRepository(database))


async def test_a_crl_and_its_audit_record_commit_together(database: Database) -> None:
    repo = SqlRepository(database)
    engine, _ = await _tree(repo)
    issuing = await _ca(repo, "issuing")
    now = datetime.now(UTC)
    crl = types.CrlRecord(ca_id=issuing.id, number=1, this_update=now, next_update=now, der=b"crl")
    record = AuditEvent(at=now, actor="system:crl", action="crl.generate", target="issuing")
    before = await _state(repo)
    with failing_statements(database, "INSERT INTO AUDIT_LOG"), pytest.raises(InjectedError):
        await repo.add_crl(crl, audit=record)
    assert await repo.latest_crl(issuing.id) is None
    assert await _state(repo) == before
    await repo.add_crl(crl, audit=record)
    assert await repo.latest_crl(issuing.id) == crl
    assert (await repo.audit_page(after_seq=len(before.audit), limit=10))[0].action == (
        "crl.generate"
    )
    verified = await engine.verify_audit()
    assert verified.broken is None
