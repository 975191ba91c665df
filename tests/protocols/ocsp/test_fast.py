"""The lean OCSP path in front of the router: hits answered, everything else unchanged."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cryptography.x509 import ocsp

from protocols.ocsp import fast
from server.app import create_http_app
from server.bootstrap import Services
from tests.protocols.ocsp.conftest import OCSP_TYPE, issue, issuing_cert
from tests.server.ca.test_responder import ocsp_request


@pytest.fixture
async def base_url(services: Services) -> AsyncIterator[str]:
    assert services.status is not None
    runner = web.AppRunner(create_http_app(services, maintenance=False), access_log=None)
    await runner.setup()
    fast.install(runner, services.status, max_request_bytes=8192)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
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
        assert services.status.cached_ocsp(body) is not None  # the app path filled the cache
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
            assert cond.status == 304  # conditional GETs go through the application
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
            assert chunked.status == 200  # no Content-Length: the application path
            parsed = ocsp.load_der_ocsp_response(await chunked.read())
            assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
        async with http.get(base_url + "/") as index:
            assert index.status == 200  # other paths are untouched
