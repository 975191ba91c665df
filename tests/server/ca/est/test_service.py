"""EST facade and its SQL repository: labels, accounts, password hashing, approvals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.ca import api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import users
from server.ca.types import AuditEvent, CAId, Principal, Serial
from server.config import EstSettings
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from tests.support import FakeClock

OP = Principal("operator", "test")


@pytest.fixture
async def service(sql_engine: api.CAEngine, database: Database) -> est_api.EstService:
    await sql_engine.create_root("root", actor=OP)
    await sql_engine.create_subordinate("issuing", parent="root", actor=OP)
    return est_api.EstService(
        sql_engine, SqlEstRepository(database), clock=FakeClock(datetime.now(UTC))
    )


def test_password_hash_round_trip() -> None:
    stored = est_api.hash_password("s3cret-pass", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert est_api.verify_password_hash("s3cret-pass", stored)
    assert not est_api.verify_password_hash("s3cret-pasS", stored)
    assert est_api.hash_password("s3cret-pass", iterations=1000) != stored  # salted
    for broken in ("", "md5$1$a$b", "pbkdf2_sha256$x$y", "pbkdf2_sha256$10$!!$!!"):
        assert not est_api.verify_password_hash("s3cret-pass", broken)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("factory-1", True, id="ok/plain"),
        pytest.param("a.b_c", True, id="ok/dots"),
        pytest.param("simpleenroll", False, id="fail/operation-name"),
        pytest.param("-x", False, id="fail/leading-dash"),
        pytest.param("x" * 65, False, id="fail/too-long"),
        pytest.param("a/b", False, id="fail/slash"),
        pytest.param("", False, id="fail/empty"),
    ],
)
def test_label_names(name: str, ok: bool) -> None:
    assert est_api.is_valid_label_name(name) is ok


async def test_labels_crud_and_default(service: est_api.EstService) -> None:
    labels = await service.list_labels()
    assert [lb.name for lb in labels] == ["default"]
    assert labels[0].source == "built-in"
    assert labels[0].profile == "device"
    await service.add_label(
        est_api.EstLabel(
            name="factory",
            ca="issuing",
            profile="tls-client",
            approval_required=True,
            csrattrs=(est_api.CsrAttr("1.2.3", ("1.2.4",)),),
        ),
        actor=OP,
    )
    got = await service.get_label("factory")
    assert got.ca == "issuing"
    assert got.profile == "tls-client"
    assert got.approval_required
    assert got.csrattrs == (est_api.CsrAttr("1.2.3", ("1.2.4",)),)
    with pytest.raises(EngineError) as err:
        await service.add_label(est_api.EstLabel(name="factory"), actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    await service.add_user("factory", "station-1", "long-enough-pw", actor=OP)
    await service.remove_label("factory", actor=OP)
    assert await service.list_users("factory") == []
    with pytest.raises(EngineError) as err:
        await service.remove_label("factory", actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        pytest.param(
            est_api.EstLabel(name="p", profile="nope"),
            ProblemKind.INVALID_PROFILE,
            id="fail/profile",
        ),
        pytest.param(est_api.EstLabel(name="c", ca="ghost"), ProblemKind.NOT_FOUND, id="fail/ca"),
        pytest.param(est_api.EstLabel(name="fullcmc"), ProblemKind.MALFORMED, id="fail/name"),
        pytest.param(
            est_api.EstLabel(name="a", auth_modes=frozenset()),
            ProblemKind.MALFORMED,
            id="fail/no-auth",
        ),
        pytest.param(
            est_api.EstLabel(
                name="t",
                trust_anchors_pem=b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n",
            ),
            ProblemKind.MALFORMED,
            id="fail/anchors",
        ),
    ],
)
async def test_bad_labels_refused(
    service: est_api.EstService, label: est_api.EstLabel, kind: ProblemKind
) -> None:
    with pytest.raises(EngineError) as err:
        await service.add_label(label, actor=OP)
    assert err.value.kind is kind
    assert [lb.name for lb in await service.list_labels()] == ["default"]


async def test_users_and_password_cache(
    service: est_api.EstService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.add_user("default", "dev1", "password-one", actor=OP)
    label = await service.get_label(None)
    calls = []
    real = est_api.verify_password_hash

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password_hash", counting)
    ident = await service.authenticate_password(label, "dev1", "password-one")
    assert ident is not None
    assert str(ident.principal) == "est-user:default/dev1"
    assert await service.authenticate_password(label, "dev1", "password-one") is not None
    assert len(calls) == 1  # the second check hit the cache
    assert await service.authenticate_password(label, "dev1", "password-two") is None
    assert await service.authenticate_password(label, "ghost", "password-one") is None
    assert len(calls) == 3  # failures are never cached; unknown users still pay PBKDF2
    # Resetting the password replaces the hash.
    await service.add_user("default", "dev1", "password-two", actor=OP)
    (user,) = await service.list_users("default")
    assert real("password-two", user.password_hash)
    with pytest.raises(EngineError):
        await service.add_user("default", "dev1", "short", actor=OP)
    with pytest.raises(EngineError):
        await service.add_user("nolabel", "dev1", "password-two", actor=OP)
    with pytest.raises(EngineError):
        await service.add_user("default", "bad:name", "password-two", actor=OP)
    await service.remove_user("default", "dev1", actor=OP)
    with pytest.raises(EngineError) as err:
        await service.remove_user("default", "dev1", actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND


async def test_decide_twice_is_conflict(service: est_api.EstService, database: Database) -> None:
    repo = SqlEstRepository(database)
    pending = est_api.PendingEnrollment(
        id=est_api.PendingId("p1"),
        label="default",
        operation=est_api.EstOperation.ENROLL,
        requester="est-user:default/dev1",
        key_fingerprint="ab" * 32,
        subject="CN=x",
        csr_der=b"\x30\x00",
        status=est_api.PendingStatus.PENDING,
        created_at=datetime.now(UTC),
    )
    await repo.add_pending(pending)
    assert (
        await repo.find_pending("default", pending.requester, pending.key_fingerprint)
    ) == pending
    await service.decide("p1", approve=True, actor=OP)
    with pytest.raises(EngineError) as err:
        await service.decide("p1", approve=False, actor=OP)
    assert err.value.kind is ProblemKind.CONFLICT
    with pytest.raises(EngineError) as err:
        await service.decide("nope", approve=True, actor=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND
    got = await repo.get_pending(est_api.PendingId("p1"))
    assert got is not None
    assert got.status is est_api.PendingStatus.APPROVED
    assert got.decided_by == "operator:test"
    assert await service.list_pending() == []
    assert len(await service.list_pending(None)) == 1


def test_config_labels(tmp_path: pytest.TempPathFactory) -> None:
    anchor = tmp_path / "anchor.pem"  # type: ignore[operator]
    anchor.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = EstSettings.model_validate(
        {
            "labels": {
                "factory": {
                    "ca": "issuing",
                    "auth": ["cert"],
                    "trust_anchors": [str(anchor)],
                    "csrattrs": ["1.2.840.113549.1.9.7", "1.2.840.10045.2.1=1.3.132.0.34"],
                }
            },
            "trusted_proxies": ["10.0.0.0/8"],
        }
    )
    (label,) = settings.to_labels().values()
    assert label.auth_modes == frozenset({est_api.AuthMode.CERT})
    assert label.csrattrs == (
        est_api.CsrAttr("1.2.840.113549.1.9.7"),
        est_api.CsrAttr("1.2.840.10045.2.1", ("1.3.132.0.34",)),
    )
    assert label.trust_anchors_pem.startswith(b"-----BEGIN")
    with pytest.raises(ValueError, match="auth modes"):
        EstSettings.model_validate({"labels": {"x": {"auth": ["token"]}}})
    with pytest.raises(ValueError, match="does not appear to be"):
        EstSettings.model_validate({"trusted_proxies": ["not-a-cidr"]})


A1 = est_api.PendingId("a1")


async def test_repository_pending_transitions(database: Database) -> None:
    repo = SqlEstRepository(database)
    now = datetime.now(UTC)
    base = est_api.PendingEnrollment(
        id=A1,
        label="default",
        operation=est_api.EstOperation.SERVERKEYGEN,
        requester="est-cert:default/CN=x#01",
        key_fingerprint="cd" * 32,
        subject="CN=x",
        csr_der=b"\x30\x03\x02\x01\x00",
        status=est_api.PendingStatus.PENDING,
        created_at=now,
    )
    await repo.add_pending(base)
    newer = est_api.PendingEnrollment(
        **{
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            "id": est_api.PendingId("a2"),
            "created_at": now + timedelta(seconds=5),
        }
    )
    await repo.add_pending(newer)
    found = await repo.find_pending("default", base.requester, base.key_fingerprint)
    assert found is not None
    assert found.id == "a2"
    assert found.operation is est_api.EstOperation.SERVERKEYGEN
    assert await repo.find_pending("default", "someone-else", base.key_fingerprint) is None
    pending, approved, issuing, issued = (
        est_api.PendingStatus.PENDING,
        est_api.PendingStatus.APPROVED,
        est_api.PendingStatus.ISSUING,
        est_api.PendingStatus.ISSUED,
    )
    # Only the expected current status moves: a second claimant loses.
    assert not await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert await repo.transition_pending(
        A1, from_status=pending, to_status=approved, at=now, by="op"
    )
    assert await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert not await repo.transition_pending(A1, from_status=approved, to_status=issuing, at=now)
    assert await repo.transition_pending(
        A1,
        from_status=issuing,
        to_status=issued,
        at=now,
        ca_id=CAId("abc"),
        serial=Serial(0xDEADBEEF),
    )
    got = await repo.get_pending(A1)
    assert got is not None
    assert got.status is issued
    assert got.serial == 0xDEADBEEF
    assert got.ca_id == "abc"
    assert got.decided_by == "op"
    assert [p.id for p in await repo.list_pending(pending)] == ["a2"]
    assert [p.id for p in await repo.list_pending(None)] == ["a1", "a2"]


async def test_repository_users(database: Database) -> None:
    repo = SqlEstRepository(database)
    now = datetime.now(UTC)
    audit = AuditEvent(at=now, actor="op", action="x", target="y")
    await repo.put_user(est_api.EstUser("default", "u1", "h1", now), audit=audit)
    await repo.put_user(est_api.EstUser("default", "u1", "h2", now), audit=audit)
    await repo.put_user(est_api.EstUser("other", "u1", "h3", now), audit=audit)
    got = await repo.get_user("default", "u1")
    assert got is not None
    assert got.password_hash == "h2"
    assert [u.label for u in await repo.list_users(None)] == ["default", "other"]
    assert await repo.remove_user("other", "u1", audit=audit)
    assert not await repo.remove_user("other", "u1", audit=audit)
    assert not await repo.remove_label("ghost", audit=audit)
