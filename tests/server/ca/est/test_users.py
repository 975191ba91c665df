"""EST accounts: PBKDF2 hashing, constant-time verification, the login cache, account rules."""

from __future__ import annotations

import pytest

from server.ca import api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import users
from server.store.est_memory import MemoryEstRepository
from tests.server.ca.est.conftest import OP


def test_password_hash_round_trip() -> None:
    stored = users.hash_password("s3cret-pass", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert users.verify_password_hash("s3cret-pass", stored)
    assert not users.verify_password_hash("s3cret-pasS", stored)
    assert users.hash_password("s3cret-pass", iterations=1000) != stored  # salted
    for broken in ("", "md5$1$a$b", "pbkdf2_sha256$x$y", "pbkdf2_sha256$10$!!$!!"):
        assert not users.verify_password_hash("s3cret-pass", broken)


async def test_users_and_password_cache(
    service: est_api.EstService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.add_user("default", "dev1", "password-one", actor=OP)
    label = await service.get_label(None)
    calls = []
    real = users.verify_password_hash

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password_hash", counting)
    ident = await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
    assert ident is not None
    assert str(ident.principal) == "est-user:default/dev1"
    assert (
        await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
        is not None
    )
    assert len(calls) == 1  # the second check hit the cache
    assert (
        await service.authenticate_password(label, "dev1", "password-two", client="192.0.2.1")
        is None
    )
    assert (
        await service.authenticate_password(label, "ghost", "password-one", client="192.0.2.1")
        is None
    )
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


async def test_login_cache_expires(
    engine: api.CAEngine, est_repo: MemoryEstRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    service = est_api.EstService(engine, est_repo, monotonic=lambda: now[0])
    await service.add_user("default", "dev1", "password-one", actor=OP)
    label = await service.get_label(None)
    calls = []
    real = users.verify_password_hash

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password_hash", counting)
    assert (
        await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
        is not None
    )
    now[0] += 59
    assert (
        await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
        is not None
    )
    assert len(calls) == 1
    now[0] += 2  # past the one-minute cache
    assert (
        await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
        is not None
    )
    assert len(calls) == 2


async def test_password_refused_on_cert_only_label(service: est_api.EstService) -> None:
    label = est_api.EstLabel(name="certonly", auth_modes=frozenset({est_api.AuthMode.CERT}))
    with pytest.raises(EngineError) as err:
        await service.authenticate_password(label, "dev1", "password-one", client="192.0.2.1")
    assert err.value.kind is ProblemKind.UNAUTHORIZED
