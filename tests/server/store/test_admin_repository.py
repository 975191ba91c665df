"""The admin repository contract, on the in-memory fake and on SQL (SQLite and PostgreSQL).

Engine tests (``tests/server/ca/admin/``) run on ``MemoryAdminRepository``; these checks
keep the fake saying what ``SqlAdminRepository`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from server.ca.admin import api as admin_api
from server.ca.admin.ports import AdminRepository
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import AuditEvent
from server.store.admin_memory import MemoryAdminRepository
from server.store.admin_repository import SqlAdminRepository
from server.store.database import Database
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Stores:
    admin: AdminRepository
    audit: Callable[[], Awaitable[list[str]]]  # audit actions, oldest first


def _event(action: str, target: str) -> AuditEvent:
    return AuditEvent(at=NOW, actor="operator:test", action=action, target=target)


def _token(name: str, token_hash: str) -> admin_api.AdminToken:
    return admin_api.AdminToken(
        name=name,
        role=admin_api.Role.ISSUER,
        scope="teamA",
        token_hash=token_hash,
        created_at=NOW,
        expires_at=NOW + timedelta(days=1),
        created_by="operator:test",
    )


def _cert(serial: int, name: str, *, created: timedelta) -> admin_api.AdminCertificate:
    return admin_api.AdminCertificate(
        serial=serial,
        name=name,
        role=admin_api.Role.AUDITOR,
        scope=None,
        subject=f"CN={name}",
        not_after=NOW + timedelta(days=30),
        created_at=NOW + created,
        created_by="operator:test",
    )


async def _tokens(stores: Stores) -> None:
    repo = stores.admin
    await repo.add_token(_token("bob", "b" * 64), audit=_event("admin.token-create", "bob"))
    await repo.add_token(_token("alice", "a" * 64), audit=_event("admin.token-create", "alice"))
    with pytest.raises(EngineError) as err:
        await repo.add_token(_token("bob", "c" * 64), audit=_event("admin.token-create", "bob"))
    assert err.value.kind is ProblemKind.CONFLICT
    assert [t.name for t in await repo.list_tokens()] == ["alice", "bob"]
    found = await repo.token_by_hash("a" * 64)
    assert found == _token("alice", "a" * 64)
    assert await repo.token_by_hash("c" * 64) is None

    await repo.touch_token("alice", at=NOW + timedelta(minutes=5))
    touched = await repo.token_by_hash("a" * 64)
    assert touched is not None
    assert touched.last_used_at == NOW + timedelta(minutes=5)

    revoke = _event("admin.token-revoke", "bob")
    assert await repo.revoke_token("bob", at=NOW + timedelta(hours=1), audit=revoke)
    assert not await repo.revoke_token("bob", at=NOW + timedelta(hours=2), audit=revoke)
    assert not await repo.revoke_token("nobody", at=NOW, audit=_event("x", "nobody"))
    revoked = await repo.token_by_hash("b" * 64)
    assert revoked is not None
    assert revoked.revoked_at == NOW + timedelta(hours=1)
    # One record per change: the refused insert and the no-op revocations wrote none.
    assert await stores.audit() == [
        "admin.token-create",
        "admin.token-create",
        "admin.token-revoke",
    ]


async def _certificates(stores: Stores) -> None:
    repo = stores.admin
    later, earlier, other = (
        # Serial order differs from (name, created) order: the listing must not follow it.
        _cert(0x01, "alice", created=timedelta(hours=1)),
        _cert(0x0A, "alice", created=timedelta(0)),
        _cert(0x05, "bob", created=timedelta(0)),
    )
    for cert in (later, other, earlier):
        await repo.add_certificate(cert, audit=_event("admin.cert-create", cert.name))
    assert await repo.certificate_by_serial(0x01) == later
    assert await repo.certificate_by_serial(0x0D) is None
    assert list(await repo.list_certificates()) == [earlier, later, other]

    at = NOW + timedelta(hours=2)
    gone = await repo.revoke_certificates("alice", at=at, audit=_event("admin.cert-revoke", "a"))
    assert sorted(c.serial for c in gone) == [0x01, 0x0A]
    assert all(c.revoked_at is None for c in gone)  # as they were
    assert await repo.revoke_certificates("alice", at=at, audit=_event("x", "a")) == []
    after = {c.serial: c.revoked_at for c in await repo.list_certificates()}
    assert after == {0x01: at, 0x0A: at, 0x05: None}
    assert await stores.audit() == ["admin.cert-create"] * 3 + ["admin.cert-revoke"]


_CONTRACT = [_tokens, _certificates]
_IDS = ["tokens", "certificates"]


@pytest.mark.parametrize("check", _CONTRACT, ids=_IDS)
async def test_memory_fake(check: Callable[[Stores], Awaitable[None]]) -> None:
    repo = MemoryRepository()
    admin = MemoryAdminRepository(repo.chain)

    async def audit() -> list[str]:
        return [e.action for e in reversed(await repo.list_audit())]

    await check(Stores(admin, audit))


@pytest.mark.parametrize("check", _CONTRACT, ids=_IDS)
async def test_sql(check: Callable[[Stores], Awaitable[None]], database: Database) -> None:
    repo = SqlRepository(database)

    async def audit() -> list[str]:
        return [e.action for e in reversed(await repo.list_audit())]

    await check(Stores(SqlAdminRepository(database), audit))
