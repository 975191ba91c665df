"""Per-client EST limits: request rate and failed logins answer 503 with Retry-After."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.protocols.est.conftest import (
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


async def test_failed_logins_lock_the_client_out(
    est_env: EstEnv, aiohttp_client: ClientFactory
) -> None:
    client = await _client(est_env, aiohttp_client, failed_logins_per_minute=3)
    der, _ = csr_der("sensor-1")
    wrong = {**PKCS10, **basic(password="not-the-password-at-all")}
    for _ in range(3):
        resp = await client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
        assert resp.status == 401
    locked = await client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=wrong)
    assert locked.status == 503
    assert int(locked.headers["Retry-After"]) >= 1
    # Even the right password waits until the window refills: no oracle for guessing.
    right = await client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert right.status == 503
    elsewhere = await client.post(
        f"{PREFIX}/simpleenroll",
        data=b64(der),
        headers={**PKCS10, **basic(), "X-Forwarded-For": "10.9.9.9"},
    )
    assert elsewhere.status == 200
    assert await est_env.cert_count() == 3
