"""OCSP over HTTP: POST and GET, statuses, caching headers, nonces and every bad input."""

from __future__ import annotations

import asyncio
import base64
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from server.ca.types import RevocationReason
from server.wiring import Services
from tests.protocols.ocsp.conftest import OCSP_TYPE, OP, issue, issuing_cert
from tests.server.ca.status.test_responder import ocsp_request
from tests.support import openssl, pem


def _get_path(body: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(body).decode(), safe="")


async def _post(client: TestClient[Any, Any], body: bytes) -> ocsp.OCSPResponse:
    resp = await client.post("/ocsp", data=body, headers={"Content-Type": OCSP_TYPE})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(await resp.read())


async def test_post_good_then_revoked(services: Services, client: TestClient[Any, Any]) -> None:
    issuing = await issuing_cert(services)
    leaf = await issue(services)
    body = ocsp_request(issuing, [leaf.serial_number])
    resp = await client.post("/ocsp", data=body, headers={"Content-Type": OCSP_TYPE})
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("max-age=")
    max_age = int(resp.headers["Cache-Control"].split(",")[0].split("=")[1])
    assert 4 * 86400 - 120 < max_age <= 4 * 86400
    assert resp.headers["ETag"].startswith('"')
    assert "Last-Modified" in resp.headers
    parsed = ocsp.load_der_ocsp_response(await resp.read())
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    await services.engine.revoke(
        leaf.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    parsed = await _post(client, body)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert parsed.revocation_reason is x509.ReasonFlags.key_compromise


async def test_get_and_conditional_get(services: Services, client: TestClient[Any, Any]) -> None:
    issuing = await issuing_cert(services)
    leaf = await issue(services)
    path = _get_path(ocsp_request(issuing, [leaf.serial_number]))
    resp = await client.get(path)
    assert resp.status == 200
    parsed = ocsp.load_der_ocsp_response(await resp.read())
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    again = await client.get(path, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    # unencoded base64 ('/' and '+' raw) is accepted too
    raw = await client.get(
        "/ocsp/" + base64.b64encode(ocsp_request(issuing, [leaf.serial_number])).decode()
    )
    assert raw.status == 200


async def test_unknown_serial(services: Services, client: TestClient[Any, Any]) -> None:
    assert services.status is not None
    store = services.status.responder._store
    issuing = await issuing_cert(services)
    before = await store.count_responses()
    parsed = await _post(client, ocsp_request(issuing, [0x1234567890]))
    assert parsed.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert await store.count_responses() == before


def _foreign_issuer() -> x509.Certificate:
    from datetime import UTC, datetime, timedelta

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "foreign")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


BAD_INPUTS = [
    pytest.param("POST", b"garbage", OCSP_TYPE, 200, 1, id="fail/garbage-der"),
    pytest.param("POST", b"", OCSP_TYPE, 200, 1, id="fail/empty-body"),
    pytest.param("POST", b"\x30" * 9000, OCSP_TYPE, 200, 1, id="fail/oversize"),
    pytest.param("POST", b"ok", "text/plain", 200, 1, id="fail/wrong-content-type"),
    pytest.param("GET", "!!not-base64!!", None, 200, 1, id="fail/bad-base64"),
    pytest.param("GET", "%ZZ", None, 200, 1, id="fail/bad-url-escape"),
    pytest.param("GET", "Z2FyYmFnZQ==", None, 200, 1, id="fail/base64-of-garbage"),
    # aiohttp's parser refuses request lines over 8190 bytes with a plain 400 first.
    pytest.param("GET", "A" * 8000, None, 200, 1, id="fail/long-get"),
    pytest.param("PUT", b"x", OCSP_TYPE, 405, 1, id="fail/method"),
    pytest.param("FOREIGN", b"", OCSP_TYPE, 200, 6, id="fail/unknown-issuer"),
]


@pytest.mark.parametrize(("method", "payload", "ctype", "http_status", "ocsp_status"), BAD_INPUTS)
async def test_bad_input_gets_ocsp_error_and_stores_nothing(
    services: Services,
    client: TestClient[Any, Any],
    method: str,
    payload: Any,
    ctype: str | None,
    http_status: int,
    ocsp_status: int,
) -> None:
    assert services.status is not None
    store = services.status.responder._store
    before = await store.count_responses()
    headers = {"Content-Type": ctype} if ctype else {}
    if method == "GET":
        resp = await client.get("/ocsp/" + payload)
    elif method == "FOREIGN":
        resp = await client.post(
            "/ocsp", data=ocsp_request(_foreign_issuer(), [7]), headers=headers
        )
    else:
        resp = await client.request(method, "/ocsp", data=payload, headers=headers)
    assert resp.status == http_status
    assert resp.headers["Content-Type"] == "application/ocsp-response"
    body = await resp.read()
    assert body == bytes([0x30, 0x03, 0x0A, 0x01, ocsp_status])
    assert ocsp.load_der_ocsp_response(body).response_status.value == ocsp_status
    assert await store.count_responses() == before


@pytest.mark.parametrize(
    "revocation_options", [pytest.param({"ocsp_nonce_echo": True}, id="ok/nonce-echo")]
)
async def test_nonce_echo_when_configured(services: Services, client: TestClient[Any, Any]) -> None:
    issuing = await issuing_cert(services)
    leaf = await issue(services)
    body = ocsp_request(issuing, [leaf.serial_number], nonce=b"\x04\x10" + b"n" * 16)
    resp = await client.post("/ocsp", data=body, headers={"Content-Type": OCSP_TYPE})
    assert resp.headers["Cache-Control"] == "no-cache, no-store"
    parsed = ocsp.load_der_ocsp_response(await resp.read())
    assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16


async def test_nonce_ignored_by_default(services: Services, client: TestClient[Any, Any]) -> None:
    issuing = await issuing_cert(services)
    leaf = await issue(services)
    body = ocsp_request(issuing, [leaf.serial_number], nonce=b"\x04\x10" + b"n" * 16)
    parsed = await _post(client, body)
    with pytest.raises(x509.ExtensionNotFound):
        parsed.extensions.get_extension_for_class(x509.OCSPNonce)


@pytest.mark.parametrize(
    "revocation_options",
    [pytest.param({"ocsp_delegated_signer": True}, id="ok/delegated")],
)
async def test_openssl_ocsp_client_with_delegated_signer(
    services: Services, client: TestClient[Any, Any]
) -> None:
    issuing = await issuing_cert(services)
    root = (await services.engine.chain_of(await services.engine.get_ca(None)))[-1]
    leaf = await issue(services)
    url = str(client.make_url("/ocsp"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "issuing.pem").write_bytes(pem(issuing))
        (d / "root.pem").write_bytes(pem(root))
        (d / "leaf.pem").write_bytes(pem(leaf))
        args = [
            "ocsp",
            "-issuer",
            str(d / "issuing.pem"),
            "-cert",
            str(d / "leaf.pem"),
            "-url",
            url,
            "-CAfile",
            str(d / "root.pem"),
            "-verify_other",
            str(d / "issuing.pem"),
            "-no_nonce",
            "-resp_text",
        ]
        out = await asyncio.to_thread(openssl, *args)
    assert out.returncode == 0, out.stderr
    assert b"Response verify OK" in out.stderr
    assert b"leaf.pem: good" in out.stdout
    assert b"OCSP Signing" in out.stdout  # the delegated signer's EKU, printed from the response
