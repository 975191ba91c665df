"""Malformed HTTP framing: aiohttp's 400 and one log line on ``aiohttp.server``, no traceback.

Raw bytes over the listeners as ``privca serve`` builds them: the HTTPS app behind a
TLS ``guard.Listener`` and the HTTP app behind the lean OCSP protocol (which hands
what it does not understand to aiohttp). Each request is one write, head and body.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.log import server_logger

from protocols.common import framing, guard
from protocols.ocsp import lean
from server.app import create_http_app, create_https_app, server_ssl_context
from server.config import load_settings
from server.store.database import Database
from server.wiring import build_est_service, ensure_first_start, open_services

SERVER_LOG = "aiohttp.server"

MALFORMED = [
    pytest.param(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "URL", id="bad/request-target"),
    pytest.param(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/9.9", id="bad/version"),
    # aiohttp logs a first request's bad method at DEBUG (TLS spoken to the plain port).
    pytest.param(b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", "method", id="bad/method"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", "header", id="bad/header"),
    pytest.param(
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "Content-Length",
        id="bad/content-length",
    ),
    pytest.param(
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        "Transfer-Encoding",
        id="bad/length-and-chunked",
    ),
    pytest.param(
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "chunk",
        id="bad/chunk-size",
    ),
]


@pytest.fixture(autouse=True)
def no_filter_yet() -> Iterator[None]:
    """Start without the filter (building the apps must install it); restore it after."""
    saved = list(server_logger.filters)
    for f in saved:
        server_logger.removeFilter(f)
    yield
    for f in list(server_logger.filters):
        server_logger.removeFilter(f)
    for f in saved:
        server_logger.addFilter(f)


@dataclass
class Ports:
    https: int
    http: int
    client_tls: ssl.SSLContext


@pytest.fixture
async def ports(database: Database, tmp_path: Path) -> AsyncIterator[Ports]:
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=database.url)
    async with open_services(settings, create=True) as services:
        tls = await ensure_first_start(services)
        assert services.status is not None
        https_runner = web.AppRunner(
            create_https_app(services, est_service=build_est_service(services))
        )
        http_runner = web.AppRunner(create_http_app(services, maintenance=False), access_log=None)
        await https_runner.setup()
        await http_runner.setup()
        assert https_runner.server is not None
        https = guard.Listener(guard.Limits())
        await https.start(https_runner.server, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
        http = lean.LeanSite(http_runner, services.status, max_request_bytes=8192)
        await http.start("127.0.0.1", 0)
        try:
            yield Ports(https.port, http.port, ssl.create_default_context(cafile=str(tls.bundle)))
        finally:
            https.close()
            await http.stop()
            await https_runner.cleanup()
            await http_runner.cleanup()


async def _exchange(port: int, data: bytes, tls: ssl.SSLContext | None = None) -> bytes:
    """Send ``data`` in one write; return everything until the server closes."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def _one_line_each(
    caplog: pytest.LogCaptureFixture,
    send: Callable[[bytes], Awaitable[bytes]],
    data: bytes,
    hint: str,
) -> None:
    caplog.clear()
    answer = await send(data)
    assert answer.startswith(b"HTTP/1."), answer
    assert answer.split(b" ", 2)[1] == b"400", answer
    records = [r for r in caplog.records if r.name == SERVER_LOG]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.exc_info is None
    assert record.levelno <= logging.INFO
    message = record.getMessage()
    assert message.startswith("malformed request from 127.0.0.1: "), message
    assert hint.lower() in message.lower(), message
    assert "\n" not in message
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(("data", "hint"), MALFORMED)
async def test_malformed_framing_is_400_and_one_line_on_both_listeners(
    ports: Ports, caplog: pytest.LogCaptureFixture, data: bytes, hint: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)

    async def over_tls(raw: bytes) -> bytes:
        return await _exchange(ports.https, raw, ports.client_tls)

    async def plain(raw: bytes) -> bytes:
        return await _exchange(ports.http, raw)

    await _one_line_each(caplog, over_tls, data, hint)
    await _one_line_each(caplog, plain, data, hint)


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a real bug")


async def test_unexpected_handler_errors_keep_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Negative control: only parser errors lose the traceback (an app without middleware)."""
    framing.install()
    app = web.Application()
    app.router.add_get("/", _boom)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    site = guard.Listener(guard.Limits())
    await site.start(runner.server, "127.0.0.1", 0)
    try:
        answer = await _exchange(
            site.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    finally:
        site.close()
        await runner.cleanup()
    assert answer.split(b" ", 2)[1] == b"500"
    records = [r for r in caplog.records if r.name == SERVER_LOG]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert "Traceback" in caplog.text


async def test_a_bad_chunk_after_the_head_ends_at_the_body_deadline_without_a_traceback(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp's parser drops a framing error found in a later packet than the head: the
    # handler's read waits until the listener's body deadline aborts the connection.
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=database.url)
    async with open_services(settings, create=True) as services:
        tls = await ensure_first_start(services)
        runner = web.AppRunner(create_https_app(services, est_service=build_est_service(services)))
        await runner.setup()
        assert runner.server is not None
        listener = guard.Listener(guard.Limits(body_timeout=0.5))
        await listener.start(runner.server, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
        try:
            client_tls = ssl.create_default_context(cafile=str(tls.bundle))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", listener.port, ssl=client_tls, server_hostname="localhost"
            )
            writer.write(
                b"POST /acme/new-account HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/jose+json\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nabcde\r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.2)
            caplog.clear()
            with caplog.at_level(logging.INFO):
                writer.write(b"zz\r\nabc\r\n0\r\n\r\n")
                answer = await asyncio.wait_for(reader.read(), 10)
                await asyncio.sleep(0.1)
            writer.close()
        finally:
            listener.close()
            await runner.cleanup()
    assert answer == b"" or answer.split(b" ", 2)[1] == b"400", answer
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert any("closing a slow client" in r.getMessage() for r in caplog.records)
