"""EST limits: requests per client, failed logins per address and account: 503 + Retry-After."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server import app as server_app
from server import wiring
from server.ca.est import api as est_api
from server.ca.est import users
from server.config import load_settings
from server.store.database import Database, sqlite_url
from server.store.est_repository import SqlEstRepository
from tests.protocols.est.conftest import (
    OP,
    PASSWORD,
    PKCS10,
    PREFIX,
    ClientFactory,
    EstEnv,
    b64,
    basic,
    csr_der,
    label_app,
)


async def _client(env: EstEnv, factory: ClientFactory, **limits: Any) -> TestClient[Any, Any]:
    app = label_app(env.service, trusted_proxies=["127.0.0.1/32", "::1/128"], **limits)
    return await factory(app)


async def test_request_rate_per_client(est_env: EstEnv, aiohttp_client: ClientFactory) -> None:
    client = await _client(est_env, aiohttp_client, requests_per_second=0.5, request_burst=3)
    statuses = [(await client.get(f"{PREFIX}/cacerts")).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await client.get(f"{PREFIX}/cacerts")
    assert limited.status == 503
    assert int(limited.headers["Retry-After"]) >= 1
    assert "too many EST requests" in await limited.text()
    # Behind the trusted proxy (the test client's 127.0.0.1) each forwarded client counts alone.
    other = await client.get(f"{PREFIX}/cacerts", headers={"X-Forwarded-For": "10.1.2.3"})
    assert other.status == 200
    # Nothing was issued or stored by the refused requests.
    assert await est_env.cert_count() == 2


async def test_failed_logins_lock_the_account_not_the_address(
    est_env: EstEnv, database: Database, aiohttp_client: ClientFactory
) -> None:
    service = est_api.EstService(
        est_env.engine,
        SqlEstRepository(database),
        clock=est_env.clock,
        login_limits=est_api.LoginLimits(per_address=5, per_account=3, check_wait=60),
    )
    await service.add_user("default", "dev2", PASSWORD, actor=OP)
    client = await aiohttp_client(label_app(service, trusted_proxies=["127.0.0.1/32", "::1/128"]))
    der, _ = csr_der("sensor-1")
    wrong = {**PKCS10, **basic(password="not-the-password-at-all")}
    for _ in range(3):
        resp = await client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
        assert resp.status == 401
    locked = await client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
    assert locked.status == 503
    assert locked.headers["Retry-After"] == "20"
    assert await locked.text() == "too many failed logins for this account; try again later\n"
    # Even the right password waits until the bucket refills, from any address: no oracle.
    for forwarded in ({}, {"X-Forwarded-For": "10.9.9.9"}):
        right = await client.post(
            f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic(), **forwarded}
        )
        assert right.status == 503
    # Another account behind the same address is not locked out.
    other = await client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic(user="dev2")}
    )
    assert other.status == 200
    est_env.clock.advance(timedelta(seconds=20))
    again = await client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert again.status == 200
    assert await est_env.cert_count() == 4


async def test_spraying_from_one_address_locks_only_that_address(
    est_env: EstEnv, database: Database, aiohttp_client: ClientFactory
) -> None:
    service = est_api.EstService(
        est_env.engine,
        SqlEstRepository(database),
        clock=est_env.clock,
        login_limits=est_api.LoginLimits(per_address=2, per_account=10, check_wait=60),
    )
    client = await aiohttp_client(label_app(service, trusted_proxies=["127.0.0.1/32", "::1/128"]))
    der, _ = csr_der("sensor-1")

    async def enroll(user: str, password: str, address: str) -> ClientResponse:
        headers = {**PKCS10, **basic(user, password), "X-Forwarded-For": address}
        return await client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=headers)

    for user in ("ghost1", "ghost2"):
        assert (await enroll(user, "not-the-password", "10.1.1.1")).status == 401
    sprayer = await enroll("ghost3", "not-the-password", "10.1.1.1")
    assert sprayer.status == 503
    assert "for this client address" in await sprayer.text()
    assert (await enroll("dev1", PASSWORD, "10.2.2.2")).status == 200


async def test_parallel_wrong_passwords_verify_at_most_the_limit(
    est_env: EstEnv,
    database: Database,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """25 parallel wrong passwords against the default 10 a minute per account: 10 checked."""
    # The default budgets; only the wait for a PBKDF2 slot is long, for a loaded test machine.
    service = est_api.EstService(
        est_env.engine,
        SqlEstRepository(database),
        clock=est_env.clock,
        login_limits=est_api.LoginLimits(check_wait=60),
    )
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    client = await aiohttp_client(label_app(service))
    calls = []
    real = users.verify_password_hash

    def counting(password: str, stored: str) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password_hash", counting)
    der, _ = csr_der("sensor-1")
    wrong = {**PKCS10, **basic(password="not-the-password-at-all")}
    responses = await asyncio.gather(
        *(client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong) for _ in range(25))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [401] * 10 + [503] * 15
    assert len(calls) == 10
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status == 503)


async def test_serve_wiring_applies_the_configured_login_limits(
    sqlite_template: Path, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    """The `[est]` keys reach the service `privca serve` builds (one failed login per account)."""
    shutil.copyfile(sqlite_template, tmp_path / "serve.db")
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        database_url=sqlite_url(tmp_path / "serve.db"),
        est={"failed_logins_per_account_per_minute": 1},
    )
    async with wiring.open_services(settings, create=True) as services:
        await wiring.ensure_first_start(services)
        await wiring.build_est_service(services).add_user("default", "dev1", PASSWORD, actor=OP)
        https = await aiohttp_client(server_app.create_https_app(services))
        der, _ = csr_der("sensor-1")
        wrong = {**PKCS10, **basic(password="not-the-password-at-all")}
        first = await https.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
        assert first.status == 401
        second = await https.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
        assert second.status == 503
        assert second.headers["Retry-After"] == "60"
