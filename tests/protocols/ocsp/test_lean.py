"""The lean OCSP protocol on the HTTP port: OCSP answered, everything else handed to aiohttp."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cryptography.x509 import ocsp

from protocols.ocsp import lean
from server.app import create_http_app
from server.wiring import Services
from tests.protocols.ocsp.conftest import OCSP_TYPE, issue, issuing_cert
from tests.server.ca.status.test_responder import ocsp_request


@pytest.fixture(params=[75.0])
async def base_url(services: Services, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    assert services.status is not None
    runner = web.AppRunner(create_http_app(services, maintenance=False), access_log=None)
    await runner.setup()
    site = lean.LeanSite(
        runner, services.status, max_request_bytes=8192, keepalive_timeout=request.param
    )
    await site.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{site.port}"
    finally:
        await site.stop()
        await runner.cleanup()


async def test_hits_misses_and_errors(services: Services, base_url: str) -> None:
    assert services.status is not None
    issuing = await issuing_cert(services)
    leaf = await issue(services)
    body = ocsp_request(issuing, [leaf.serial_number])
    get_path = "/ocsp/" + urllib.parse.quote(base64.b64encode(body).decode(), safe="")
    headers = {"Content-Type": OCSP_TYPE}
    async with aiohttp.ClientSession() as http:
        assert services.status.cached_ocsp(body) is None
        async with http.post(base_url + "/ocsp", data=body, headers=headers) as miss:
            first = await miss.read()
            assert miss.status == 200
        assert services.status.cached_ocsp(body) is not None  # the miss filled the cache
        async with http.post(base_url + "/ocsp", data=body, headers=headers) as hit:
            assert hit.status == 200
            assert hit.headers["Content-Type"] == "application/ocsp-response"
            assert hit.headers["Cache-Control"].startswith("max-age=")
            assert await hit.read() == first
        async with http.get(base_url + get_path) as got:
            assert got.status == 200
            assert await got.read() == first
            etag = got.headers["ETag"]
        async with http.get(base_url + get_path, headers={"If-None-Match": etag}) as cond:
            assert cond.status == 304
            assert cond.headers["ETag"] == etag
        for bad in (b"garbage", b"\x30\x00"):
            async with http.post(base_url + "/ocsp", data=bad, headers=headers) as err:
                assert err.status == 200
                assert await err.read() == b"\x30\x03\x0a\x01\x01"
        async with http.post(
            base_url + "/ocsp", data=body, headers={"Content-Type": "text/plain"}
        ) as wrong_type:
            assert await wrong_type.read() == b"\x30\x03\x0a\x01\x01"

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:10]
            yield body[10:]

        async with http.post(base_url + "/ocsp", data=chunks(), headers=headers) as chunked:
            assert chunked.status == 200  # chunked: handed to the application
            parsed = ocsp.load_der_ocsp_response(await chunked.read())
            assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
        async with http.get(base_url + "/") as index:
            assert index.status == 200  # other paths: handed to the application


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


def _post(body: bytes, *, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    head = (
        f"POST /ocsp {version}\r\nHost: x\r\nContent-Type: {OCSP_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def _connect(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_pipelined_requests_answer_in_order_across_a_handoff(
    services: Services, base_url: str
) -> None:
    issuing = await issuing_cert(services)
    first = ocsp_request(issuing, [(await issue(services)).serial_number])
    second = ocsp_request(issuing, [(await issue(services)).serial_number])
    get_path = "/ocsp/" + urllib.parse.quote(base64.b64encode(second).decode(), safe="")
    reader, writer = await _connect(base_url)
    try:
        # Two misses, a GET and a path only the application serves, then OCSP again:
        # all in one write, answered in order, the last two by aiohttp after the handoff.
        writer.write(
            _post(first)
            + _post(second)
            + f"GET {get_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            + _post(first)
        )
        await writer.drain()
        answers = [await _read_response(reader) for _ in range(5)]
    finally:
        writer.close()
    statuses = [a[0] for a in answers]
    assert statuses == [200, 200, 200, 200, 200]
    serials = [
        ocsp.load_der_ocsp_response(a[2]).serial_number
        for a in (answers[0], answers[1], answers[4])
    ]
    assert serials[0] == serials[2] != serials[1]
    assert answers[2][2] == answers[1][2]  # GET and POST of the same request: same bytes
    assert answers[0][1]["content-type"] == "application/ocsp-response"
    assert "date" in answers[0][1]
    assert answers[3][1]["content-type"].startswith("application/json")  # the application


async def test_http10_closes_and_bad_framing_goes_to_aiohttp(
    services: Services, base_url: str
) -> None:
    issuing = await issuing_cert(services)
    body = ocsp_request(issuing, [(await issue(services)).serial_number])
    reader, writer = await _connect(base_url)
    writer.write(_post(body, version="HTTP/1.0"))
    status, headers, answer = await _read_response(reader)
    assert status == 200
    assert headers["connection"] == "close"
    assert ocsp.load_der_ocsp_response(answer).response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the answer
    writer.close()

    for raw in (
        b"NONSENSE\r\n\r\n",  # no method/target/version
        # aiohttp answers an over-long header line (LineTooLong) with 400, not RFC 6585's 431.
        b"GET /ocsp/x HTTP/1.1\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
    ):
        reader, writer = await _connect(base_url)
        writer.write(raw)
        status, _, _ = await _read_response(reader)
        assert status == 400
        writer.close()

    # Over the size limit: the application refuses it as malformedRequest.
    reader, writer = await _connect(base_url)
    writer.write(_post(b"\x30" * 9000))
    status, _, answer = await _read_response(reader)
    # An unsuccessful OCSP response travels with 200, like every OCSP answer here.
    assert (status, answer) == (200, b"\x30\x03\x0a\x01\x01")
    writer.close()

    # Bad base64 in a GET is answered here, as the application would.
    reader, writer = await _connect(base_url)
    writer.write(b"GET /ocsp/%%%not-base64 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, answer = await _read_response(reader)
    assert (status, answer) == (200, b"\x30\x03\x0a\x01\x01")
    writer.close()


@pytest.mark.parametrize("base_url", [0.3], indirect=True)
async def test_idle_connections_are_closed(base_url: str) -> None:
    reader, writer = await _connect(base_url)
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_bare_lf_heads_are_answered(services: Services, base_url: str) -> None:
    issuing = await issuing_cert(services)
    body = ocsp_request(issuing, [(await issue(services)).serial_number])
    for raw in (
        _post(body).replace(b"\r\n", b"\n"),  # every line ends in a bare LF
        _post(body).replace(b"\r\n\r\n", b"\n\n"),  # only the empty line
        b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",  # a bare LF inside a CRLF head
    ):
        reader, writer = await _connect(base_url)
        try:
            writer.write(raw)
            # Answered (aiohttp accepts or refuses bare LFs), not left to the idle timeout.
            status, _, answer = await asyncio.wait_for(_read_response(reader), 5)
        finally:
            writer.close()
        # aiohttp refuses bare-LF framing (RFC 9112 §2.2 lets a server reject it).
        assert status == 400, answer


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_post_with_a_content_encoding_is_malformed(base_url: str, encoding: str) -> None:
    """Issue 13: a compressed (here: lying) body is malformedRequest, not internalError."""
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{base_url}/ocsp",
            data=b"not compressed at all",
            headers={"Content-Type": OCSP_TYPE, "Content-Encoding": encoding},
        )
        body = await resp.read()
    assert resp.status == 200
    assert body == bytes([0x30, 0x03, 0x0A, 0x01, 0x01])  # malformedRequest
