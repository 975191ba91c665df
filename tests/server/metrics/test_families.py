"""Counted families move when the thing happens: issuance, revocation, requests, OCSP, pool."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from protocols.ocsp import lean
from server.app import create_http_app, create_https_app
from server.ca.est import api as est_api
from server.ca.types import RevocationReason
from server.metrics import families
from server.metrics.runtime import ProcessMetrics
from server.wiring import Services, build_est_service
from tests.protocols.est.conftest import PKCS10, b64, basic, csr_der
from tests.server.ca.status.test_responder import ocsp_request
from tests.server.metrics.conftest import OP, ClientFactory, issue, sample

ISSUED = "privca_certificates_issued_total"
REVOKED = "privca_certificates_revoked_total"
LEAF = {"ca": "issuing", "profile": "tls-server", "protocol": "cli"}


async def test_engine_issuance_and_revocation_count_by_ca_profile_protocol(
    services: Services, metrics: ProcessMetrics
) -> None:
    _, record = await issue(services)
    assert sample(metrics, ISSUED, **LEAF) == 1
    assert sample(metrics, REVOKED, **LEAF) == 0
    await services.engine.revoke(
        record.serial, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    assert sample(metrics, REVOKED, **LEAF) == 1
    assert sample(metrics, ISSUED, **LEAF) == 1


def test_protocol_labels_come_from_a_fixed_set() -> None:
    assert families.protocol_of("acme:acct-123") == "acme"
    assert families.protocol_of("est-user:default/dev1") == "est"
    assert families.protocol_of("est-cert:CN=x") == "est"
    assert families.protocol_of("operator:cli") == "cli"
    assert families.protocol_of(f"{uuid.uuid4()}:x") == "other"
    assert families.protocol_of("nonsense") == "other"


async def _est_client(
    services: Services, metrics: ProcessMetrics, aiohttp_client: ClientFactory
) -> tuple[TestClient[Any, Any], est_api.EstService]:
    est = build_est_service(services)
    await est.add_user("default", "dev1", "correct-horse-battery", actor=OP)
    app = create_https_app(services, est_service=est, metrics=metrics)
    return await aiohttp_client(app), est


async def test_est_enrollment_counts_as_est_and_is_timed_by_route(
    services: Services, metrics: ProcessMetrics, aiohttp_client: ClientFactory
) -> None:
    client, _ = await _est_client(services, metrics, aiohttp_client)
    der, _ = csr_der("fire-sensor-123")
    resp = await client.post(
        "/.well-known/est/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200, await resp.text()
    assert sample(metrics, ISSUED, ca="issuing", profile="device", protocol="est") == 1
    endpoint = "/.well-known/est/simpleenroll"
    assert (
        sample(
            metrics, "privca_http_request_duration_seconds_count", endpoint=endpoint, method="POST"
        )
        == 1
    )
    # A wrong password: an error of the same route, by HTTP status class (EST has no types).
    resp = await client.post(
        "/.well-known/est/simpleenroll",
        data=b64(der),
        headers={**PKCS10, **basic(password="wrong-password-1")},
    )
    assert resp.status == 401
    errors = "privca_http_request_errors_total"
    assert sample(metrics, errors, endpoint=endpoint, method="POST", problem="4xx") == 1
    assert sample(metrics, ISSUED, ca="issuing", profile="device", protocol="est") == 1


async def test_acme_errors_are_counted_by_problem_type(
    services: Services, metrics: ProcessMetrics, aiohttp_client: ClientFactory
) -> None:
    client, _ = await _est_client(services, metrics, aiohttp_client)
    resp = await client.post(
        "/acme/order/abc", data=b"{}", headers={"Content-Type": "application/jose+json"}
    )
    assert resp.status == 400
    assert (await resp.json())["type"] == "urn:ietf:params:acme:error:malformed"
    assert (
        sample(
            metrics,
            "privca_http_request_errors_total",
            endpoint="/acme/order/{order_id}",
            method="POST",
            problem="malformed",
        )
        == 1
    )


async def test_random_paths_do_not_create_series(
    services: Services, metrics: ProcessMetrics, aiohttp_client: ClientFactory
) -> None:
    client, _ = await _est_client(services, metrics, aiohttp_client)
    # Methods aiohttp parses but no route takes (it refuses unknown tokens before the app).
    odd_methods = ["PROPFIND", "MKCOL", "TRACE", "LOCK", "UNLOCK"]
    for n in range(25):
        token = uuid.uuid4().hex
        assert (await client.get(f"/{token}")).status == 404
        assert (await client.get(f"/acme/{token}/{token}")).status == 404
        await client.post(f"/acme/order/{token}", data=b"{}")
        await client.request(odd_methods[n % 5], "/acme/directory")
    assert metrics.registry is not None
    endpoints: set[str] = set()
    methods: set[str] = set()
    for family in metrics.registry.collect():
        if family.name.startswith("privca_http_request"):
            for s in family.samples:
                endpoints.add(s.labels["endpoint"])
                methods.add(s.labels["method"])
    # A method no route takes (405) matched no route either.
    assert endpoints == {"unmatched", "/acme/order/{order_id}"}
    assert methods == {"GET", "POST", "OTHER"}
    count = "privca_http_request_duration_seconds_count"
    assert sample(metrics, count, endpoint="unmatched", method="GET") == 50


async def test_ocsp_cache_hits_and_misses(
    services: Services, metrics: ProcessMetrics, aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(create_http_app(services, maintenance=False, metrics=metrics))
    cert, _ = await issue(services)
    issuing = (await services.engine.get_ca(None)).certificate
    body = ocsp_request(issuing, [cert.serial_number])
    headers = {"Content-Type": "application/ocsp-request"}
    sync = families.ProcessSync(metrics.families, services.db, services.status)
    assert (await client.post("/ocsp", data=body, headers=headers)).status == 200
    sync.sync()
    assert sample(metrics, "privca_ocsp_cache_answers_total", result="miss") == 1
    assert sample(metrics, "privca_ocsp_cache_answers_total", result="hit") == 0
    for _ in range(3):
        assert (await client.post("/ocsp", data=body, headers=headers)).status == 200
    get = "/ocsp/" + base64.b64encode(body).decode()
    assert (await client.get(get)).status == 200
    sync.sync()
    assert sample(metrics, "privca_ocsp_cache_answers_total", result="hit") == 4
    assert sample(metrics, "privca_ocsp_cache_answers_total", result="miss") == 1


async def test_pool_in_use_is_published_by_sync(
    services: Services, metrics: ProcessMetrics
) -> None:
    sync = families.ProcessSync(metrics.families, services.db, services.status)
    sync.sync()
    idle = sample(metrics, "privca_db_connections_in_use")
    async with services.db.write():
        sync.sync()
        assert sample(metrics, "privca_db_connections_in_use") == idle + 1
    sync.sync()
    assert sample(metrics, "privca_db_connections_in_use") == idle


async def test_lean_ocsp_answers_are_counted_by_status(
    services: Services, metrics: ProcessMetrics
) -> None:
    assert services.status is not None
    runner = web.AppRunner(create_http_app(services, maintenance=False), access_log=None)
    await runner.setup()
    site = lean.LeanSite(runner, services.status, max_request_bytes=8192)
    await site.start("127.0.0.1", 0)
    sync = families.ProcessSync(metrics.families, services.db, services.status)
    sync.watch_lean(site.answers)
    cert, _ = await issue(services)
    issuing = (await services.engine.get_ca(None)).certificate
    body = ocsp_request(issuing, [cert.serial_number])
    headers = {"Content-Type": "application/ocsp-request"}
    url = f"http://127.0.0.1:{site.port}/ocsp"
    try:
        async with aiohttp.ClientSession() as http:
            for data in (body, body, b"\x30\x03\x02\x01\x01"):
                async with http.post(url, data=data, headers=headers) as resp:
                    assert resp.status == 200
                    await resp.read()
    finally:
        await site.stop()
        await runner.cleanup()
    sync.sync()
    lean_answers = "privca_ocsp_lean_answers_total"
    assert sample(metrics, lean_answers, status="successful") == 2
    assert sample(metrics, lean_answers, status="malformedRequest") == 1
    sync.sync()  # only what changed is added
    assert sample(metrics, lean_answers, status="successful") == 2
    assert sample(metrics, "privca_ocsp_cache_answers_total", result="hit") == 1
