"""Compressed request bodies get each protocol's own refusal, never aiohttp's 400 or a 5xx.

Issue 13: with aiohttp decoding ``Content-Encoding`` itself, a body that did not decode
and arrived with the request head was answered by aiohttp's parser (``text/plain`` 400
"Can not decode content-encoding") before any handler ran. Every request here is one
``sendall`` of head and body on a raw socket, the case that reached the parser, against
the applications as ``privca serve`` builds them (OCSP behind the lean protocol).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from protocols.ocsp import lean
from server.app import create_http_app, create_https_app
from server.ca.types import CertQuery, Principal
from server.config import load_settings
from server.store.database import Database
from server.wiring import Services, build_est_service, ensure_first_start, open_services
from tests.protocols.ocsp.conftest import OCSP_TYPE, issue, issuing_cert
from tests.server.ca.status.test_responder import ocsp_request
from tests.support import make_csr

OP = Principal("operator", "test")
PASSWORD = "correct-horse-battery"
MALFORMED_REQUEST = b"\x30\x03\x0a\x01\x01"
ServerFactory = Callable[..., Awaitable[TestServer]]
# What aiohttp's parser answers itself; no answer here may look like it.
PARSER_400 = b"Can not decode content-encoding"


def _gzip_truncated(payload: bytes) -> bytes:
    packed = gzip.compress(payload)
    return packed[: len(packed) // 2]


# (Content-Encoding, how the body is packed): decodable codings are refused all the same.
CODINGS = [
    pytest.param("gzip", gzip.compress, id="gzip"),
    pytest.param("deflate", zlib.compress, id="deflate"),
    pytest.param("br", bytes, id="br"),  # not brotli at all
    pytest.param("x-garbage", lambda _: b"\x00\xff" * 20, id="garbage"),
    pytest.param("gzip", _gzip_truncated, id="gzip-truncated"),
    pytest.param("identity, gzip", gzip.compress, id="identity-then-gzip"),
]
Pack = Callable[[bytes], bytes]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Env:
    services: Services
    https_port: int
    http_port: int


async def _exchange(port: int, head: str, body: bytes) -> Answer:
    """Send head and body in one write (Connection: close); return the parsed answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = head.replace("\n", "\r\n") + f"Content-Length: {len(body)}\r\n"
        writer.write(request.encode() + b"Connection: close\r\n\r\n" + body)
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split(" ")[1]), headers, rest)


@pytest.fixture
async def env(
    database: Database, tmp_path: Path, aiohttp_server: ServerFactory
) -> AsyncIterator[Env]:
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        database_url=database.url,
        est={"requests_per_second": 0},
        revocation={"crl_debounce_seconds": 0},
    )
    async with open_services(settings, create=True) as services:
        await ensure_first_start(services)
        assert services.status is not None
        est = build_est_service(services)
        await est.add_user("default", "dev1", PASSWORD, actor=OP)
        https = await aiohttp_server(create_https_app(services, est_service=est))
        runner = web.AppRunner(create_http_app(services, maintenance=False), access_log=None)
        await runner.setup()
        site = lean.LeanSite(runner, services.status, max_request_bytes=8192)
        await site.start("127.0.0.1", 0)
        assert https.port is not None
        try:
            yield Env(services, https.port, site.port)
        finally:
            await site.stop()
            await runner.cleanup()


def _assert_not_parser(answer: Answer) -> None:
    assert answer.status < 500, answer
    assert PARSER_400 not in answer.body, answer


def _csr_b64() -> bytes:
    pem, _ = make_csr((), subject="fire-sensor-123")
    return base64.b64encode(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))


async def _issued(services: Services) -> int:
    return len(await services.engine.find_certificates(CertQuery(limit=10_000)))


@pytest.mark.parametrize(("encoding", "pack"), CODINGS)
async def test_acme_answers_a_malformed_problem_415_with_a_nonce(
    env: Env, encoding: str, pack: Pack
) -> None:
    payload = b'{"protected":"e30","payload":"","signature":""}'
    body = pack(payload)
    answer = await _exchange(
        env.https_port,
        "POST /acme/new-account HTTP/1.1\nHost: localhost\n"
        f"Content-Type: application/jose+json\nContent-Encoding: {encoding}\n",
        body,
    )
    _assert_not_parser(answer)
    assert answer.status == 415, answer
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["accept-encoding"] == "identity"
    assert answer.headers["replay-nonce"]
    problem: dict[str, Any] = json.loads(answer.body)
    assert problem["type"] == "urn:ietf:params:acme:error:malformed"
    assert "Content-Encoding" in problem["detail"]


@pytest.mark.parametrize(("encoding", "pack"), CODINGS)
async def test_est_answers_415_with_its_text_reason(env: Env, encoding: str, pack: Pack) -> None:
    body = pack(_csr_b64())
    before = await _issued(env.services)
    token = base64.b64encode(f"dev1:{PASSWORD}".encode()).decode()
    answer = await _exchange(
        env.https_port,
        "POST /.well-known/est/simpleenroll HTTP/1.1\nHost: localhost\n"
        f"Authorization: Basic {token}\n"
        f"Content-Type: application/pkcs10\nContent-Encoding: {encoding}\n",
        body,
    )
    _assert_not_parser(answer)
    assert answer.status == 415, answer
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["accept-encoding"] == "identity"
    assert b"Content-Encoding" in answer.body
    assert await _issued(env.services) == before


async def test_est_identity_coding_enrolls(env: Env) -> None:
    """Negative control: ``identity`` is no coding at all."""
    token = base64.b64encode(f"dev1:{PASSWORD}".encode()).decode()
    answer = await _exchange(
        env.https_port,
        "POST /.well-known/est/simpleenroll HTTP/1.1\nHost: localhost\n"
        f"Authorization: Basic {token}\n"
        "Content-Type: application/pkcs10\nContent-Encoding: identity\n",
        _csr_b64(),
    )
    assert answer.status == 200, answer


@pytest.mark.parametrize(("encoding", "pack"), CODINGS)
async def test_ocsp_answers_malformed_request(env: Env, encoding: str, pack: Pack) -> None:
    issuing = await issuing_cert(env.services)
    leaf = await issue(env.services)
    body = pack(ocsp_request(issuing, [leaf.serial_number]))
    answer = await _exchange(
        env.http_port,
        f"POST /ocsp HTTP/1.1\nHost: localhost\nContent-Type: {OCSP_TYPE}\n"
        f"Content-Encoding: {encoding}\n",
        body,
    )
    _assert_not_parser(answer)
    # HTTP 200 and malformedRequest: what `openssl ocsp` reports as a responder error.
    assert answer.status == 200, answer
    assert answer.body == MALFORMED_REQUEST
    assert answer.headers["accept-encoding"] == "identity"


async def test_ocsp_identity_coding_answers(env: Env) -> None:
    """Negative control: ``identity`` is answered (by the application after the handoff)."""
    issuing = await issuing_cert(env.services)
    leaf = await issue(env.services)
    answer = await _exchange(
        env.http_port,
        f"POST /ocsp HTTP/1.1\nHost: localhost\nContent-Type: {OCSP_TYPE}\n"
        "Content-Encoding: identity\n",
        ocsp_request(issuing, [leaf.serial_number]),
    )
    assert answer.status == 200
    parsed = ocsp.load_der_ocsp_response(answer.body)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
