"""Admin identities in the engine: tokens and admin certificates log in until revoked or expired.

``AdminService`` on the in-memory engine and ``MemoryAdminRepository`` (the contract
it keeps with SQL is ``tests/server/store/test_admin_repository.py``), with a fake
clock advanced by hand; the HTTP front end is ``tests/protocols/admin/``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from server.ca import api
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.keys import KeyBackend
from server.ca.types import CertQuery, CertStatus, KeyAlgorithm, Principal, Serial
from server.store.admin_memory import MemoryAdminRepository
from server.store.memory import MemoryRepository
from tests.support import FakeClock

OP = Principal("operator", "test")
HOUR = timedelta(hours=1)


class Env:
    def __init__(self, key_backend: KeyBackend) -> None:
        # Now: the admin CA and its certificates are made with real validity times.
        self.clock = FakeClock(datetime.now(UTC))
        self.repo = MemoryRepository()
        self.admin_repo = MemoryAdminRepository(self.repo.chain)
        engine = api.CAEngine(
            self.repo, key_backend, settings=api.EngineSettings(), clock=self.clock
        )
        self.service = admin_api.AdminService(engine, self.admin_repo, admin_ca="admin")

    async def login(self, secret: str) -> admin_api.AdminPrincipal:
        return await self.service.authenticate_token(secret, address="192.0.2.7", action="GET /x")

    def denial(self) -> dict[str, str]:
        event = self.repo.audit[-1]
        assert event.action == "admin.denied"
        assert event.source == "192.0.2.7"
        return {"actor": event.actor, **{k: str(v) for k, v in event.detail.items()}}


@pytest.fixture
def env(key_backend: KeyBackend) -> Env:
    return Env(key_backend)


async def test_token_logs_in_until_it_expires(env: Env) -> None:
    _, secret = await env.service.create_token(
        "ci", role=admin_api.Role.AUDITOR, scope=None, lifetime=HOUR, actor=OP
    )
    who = await env.login(secret)
    assert (who.name, who.role, who.scope, who.via) == ("ci", admin_api.Role.AUDITOR, None, "token")
    assert env.admin_repo.tokens["ci"].last_used_at == env.clock.now()
    env.clock.advance(HOUR - timedelta(seconds=1))
    assert (await env.login(secret)).name == "ci"
    env.clock.advance(timedelta(seconds=1))
    with pytest.raises(EngineError) as err:
        await env.login(secret)
    assert err.value.kind is ProblemKind.UNAUTHENTICATED
    assert env.denial() == {"actor": "admin:ci", "action": "GET /x", "reason": "the token expired"}


async def test_revoked_and_unknown_tokens_are_refused(env: Env) -> None:
    _, secret = await env.service.create_token(
        "ops", role=admin_api.Role.OWNER, scope=None, lifetime=HOUR, actor=OP
    )
    with pytest.raises(EngineError) as err:
        await env.service.create_token(
            "ops", role=admin_api.Role.OWNER, scope=None, lifetime=HOUR, actor=OP
        )
    assert err.value.kind is ProblemKind.CONFLICT
    await env.service.revoke_token("ops", actor=OP)
    with pytest.raises(EngineError) as err:
        await env.login(secret)
    assert env.denial()["reason"] == "the token is revoked"
    with pytest.raises(EngineError) as err:
        await env.service.revoke_token("ops", actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND
    # Well formed, but no token has it: the denial names nobody.
    stranger = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with pytest.raises(EngineError) as err:
        await env.login(stranger)
    assert env.denial() == {
        "actor": "admin:anonymous",
        "action": "GET /x",
        "reason": "unknown token",
    }
    actions = [e.action for e in env.repo.audit]
    assert actions.count("admin.token-create") == 1
    assert actions.count("admin.token-revoke") == 1


async def test_admin_certificate_logs_in_until_its_identity_is_revoked(env: Env) -> None:
    await env.service.ensure_admin_ca(actor=OP, key_algorithm=KeyAlgorithm.EC_P256)
    issued = await env.service.create_certificate(
        "alice", role=admin_api.Role.ISSUER, scope=None, lifetime=timedelta(days=7), actor=OP
    )
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    who = await env.service.authenticate_certificate(der, address="192.0.2.7", action="GET /x")
    assert (who.name, who.role, who.via) == ("alice", admin_api.Role.ISSUER, "certificate")
    revoked = await env.service.revoke_certificate_identity("alice", actor=OP)
    assert list(revoked) == [issued.certificate.serial_number]
    with pytest.raises(EngineError) as err:
        await env.service.authenticate_certificate(der, address="192.0.2.7", action="GET /x")
    assert err.value.kind is ProblemKind.UNAUTHENTICATED
    assert env.denial()["reason"] == "the admin certificate is revoked"
    # A new certificate for the same name is a new identity; past its validity it is refused.
    again = await env.service.create_certificate(
        "alice", role=admin_api.Role.ISSUER, scope=None, lifetime=timedelta(days=7), actor=OP
    )
    der = again.certificate.public_bytes(serialization.Encoding.DER)
    assert (
        await env.service.authenticate_certificate(der, address=None, action="x")
    ).name == "alice"
    env.clock.advance(timedelta(days=8))
    with pytest.raises(EngineError):
        await env.service.authenticate_certificate(der, address="192.0.2.7", action="GET /x")
    assert env.denial()["reason"] == "the client certificate is not within its validity period"


class _InjectedError(Exception):
    """The failure a test put into one repository write."""


async def test_revoking_again_finishes_what_a_failed_run_left(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = Principal("operator", "alice", source="cli@ops-host")
    admin_ca = await env.service.ensure_admin_ca(actor=OP, key_algorithm=KeyAlgorithm.EC_P256)

    async def status(serial: int) -> CertStatus | None:
        return await env.repo.certificate_status(admin_ca.id, Serial(serial))

    def records_after(seq: int) -> list[tuple[str, str, str, str]]:
        return [(e.actor, e.action, e.target, e.source) for e in env.repo.audit[seq:]]

    # A run that unbinds and then fails before the revocation: no login, but still valid.
    issued = await env.service.create_certificate(
        "alice", role=admin_api.Role.ISSUER, scope=None, lifetime=timedelta(days=7), actor=OP
    )
    serial = issued.certificate.serial_number
    with monkeypatch.context() as patch:
        patch.setattr(env.repo, "revoke_certificate", _fail)
        with pytest.raises(_InjectedError):
            await env.service.revoke_certificate_identity("alice", actor=ops)
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(EngineError):
        await env.service.authenticate_certificate(der, address="192.0.2.7", action="GET /x")
    assert await status(serial) is CertStatus.VALID
    seq = len(env.repo.audit)
    assert list(await env.service.revoke_certificate_identity("alice", actor=ops)) == [serial]
    assert records_after(seq) == [("operator:alice", "cert.revoke", f"{serial:X}", "cli@ops-host")]
    assert await status(serial) is CertStatus.REVOKED

    # A creation whose binding failed after issuance: the certificate is revoked too.
    with monkeypatch.context() as patch:
        patch.setattr(env.admin_repo, "add_certificate", _fail)
        with pytest.raises(_InjectedError):
            await env.service.create_certificate(
                "bob", role=admin_api.Role.ISSUER, scope=None, lifetime=HOUR, actor=OP
            )
    (stray,) = [
        r
        for r in await env.repo.list_certificates(CertQuery(ca_id=admin_ca.id))
        if r.subject == "CN=bob"
    ]
    assert stray.status is CertStatus.VALID
    # Another name's certificate (CN=bobby) is not this name's.
    other = await env.service.create_certificate(
        "bobby", role=admin_api.Role.ISSUER, scope=None, lifetime=HOUR, actor=OP
    )
    seq = len(env.repo.audit)
    assert list(await env.service.revoke_certificate_identity("bob", actor=ops)) == [stray.serial]
    assert records_after(seq) == [
        ("operator:alice", "cert.revoke", stray.serial_hex, "cli@ops-host")
    ]
    assert await status(other.certificate.serial_number) is CertStatus.VALID

    # Nothing left: refused, nothing recorded.
    seq = len(env.repo.audit)
    for name in ("alice", "bob"):
        with pytest.raises(EngineError) as err:
            await env.service.revoke_certificate_identity(name, actor=ops)
        assert err.value.kind is ProblemKind.NOT_FOUND
    assert records_after(seq) == []


async def _fail(*_args: object, **_kwargs: object) -> None:
    raise _InjectedError
