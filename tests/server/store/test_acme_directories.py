"""Stored ACME directories and directory-bound accounts on SQLite and PostgreSQL."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from server.ca.acme import types as at
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import AuditEvent
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.support import TEST_SEALER

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _event(action: str) -> AuditEvent:
    return AuditEvent(at=NOW, actor="operator:test", action=action, target="corp")


async def test_directories_round_trip_with_audit(database: Database) -> None:
    repo = SqlAcmeRepository(database, TEST_SEALER)
    corp = at.AcmeDirectory(
        name="corp",
        ca="corp-ca",
        profiles=("shortlived",),
        dns_suffixes=("corp.example",),
        ip_ranges=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")),
        wildcard=False,
        eab_required=True,
    )
    await repo.add_directory(corp, audit=_event("acme.directory-add"))
    assert await repo.get_directory("corp") == corp
    plain = at.AcmeDirectory(name="lab", ca="lab-ca")
    await repo.add_directory(plain, audit=_event("acme.directory-add"))
    assert list(await repo.list_directories()) == [corp, plain]
    with pytest.raises(EngineError) as err:
        await repo.add_directory(corp, audit=_event("acme.directory-add"))
    assert err.value.kind is ProblemKind.CONFLICT
    assert await repo.remove_directory("corp", audit=_event("acme.directory-remove"))
    assert not await repo.remove_directory("corp", audit=_event("acme.directory-remove"))
    assert await repo.get_directory("corp") is None
    actions = [e.action for e in await SqlRepository(database).list_audit()]
    assert actions.count("acme.directory-add") == 2
    assert actions.count("acme.directory-remove") == 1


async def test_accounts_keep_their_directory(database: Database) -> None:
    repo = SqlAcmeRepository(database, TEST_SEALER)
    key = at.AccountKey(jwk="{}", thumbprint="t1", spki=b"k")
    acct = at.Account(
        id=at.AccountId("a1"),
        status=at.AccountStatus.VALID,
        key=key,
        contact=(),
        tos_agreed=True,
        created_at=NOW,
        directory="corp",
    )
    assert (await repo.add_account(acct)).directory == "corp"
    found = await repo.get_account(acct.id)
    assert found is not None
    assert found.directory == "corp"
    # A second account with the same key (any directory) gets the first one back.
    other = at.Account(
        id=at.AccountId("a2"),
        status=at.AccountStatus.VALID,
        key=key,
        contact=(),
        tos_agreed=True,
        created_at=NOW,
    )
    assert (await repo.add_account(other)).directory == "corp"
