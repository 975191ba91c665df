"""Slow-client deadlines and the connection cap, with raw sockets against a guarded aiohttp app."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.common import guard

LIMITS = guard.Limits(header_timeout=0.6, body_timeout=0.6, max_connections=3)
# The first bytes of a TLS record carrying a ClientHello; the rest never comes.
_CLIENT_HELLO_START: Final = bytes.fromhex("16030100f4010000f00303")


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@pytest.fixture
async def listener() -> AsyncIterator[guard.Listener]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_get("/", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    site = guard.Listener(LIMITS)
    await site.start(runner.server, "127.0.0.1", 0)
    try:
        yield site
    finally:
        site.close()
        await runner.cleanup()


async def _open(site: guard.Listener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", site.port)


async def _dribble(writer: asyncio.StreamWriter, data: bytes) -> float:
    """Send one byte every 0.1 s until the server closes; return how long that took."""
    started = time.monotonic()
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
    except ConnectionError:
        pass
    return time.monotonic() - started


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 3) == b""
    except ConnectionError:
        return True


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"", id="cut/slow-head"),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", id="cut/slow-body"
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n",
            id="cut/slow-chunked-body",
        ),
    ],
)
async def test_dribbling_client_is_cut_off(listener: guard.Listener, prefix: bytes) -> None:
    reader, writer = await _open(listener)
    writer.write(prefix)
    slow = (b"" if prefix else b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") + b"a" * 100
    # Each byte arrives well within any idle timeout; the phase's total deadline still ends it.
    took = await _dribble(writer, slow)
    assert await _closed(reader)
    writer.close()
    assert took < 3.0  # 100 bytes would take 10 s
    assert listener.timed_out == 1


async def test_silent_connection_is_cut_off(listener: guard.Listener) -> None:
    reader, writer = await _open(listener)
    started = time.monotonic()
    assert await _closed(reader)
    assert time.monotonic() - started < 2.5
    writer.close()


async def test_normal_clients_and_keep_alive_survive(listener: guard.Listener) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{listener.port}"
        async with http.post(url + "/echo", data=b"x" * 50_000) as resp:
            assert resp.status == 200
            assert await resp.read() == b"x" * 50_000
    # Idle between requests longer than the head deadline: keep-alive is not a slow head.
    reader, writer = await _open(listener)
    for _ in range(2):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(2) == b"ok"
        await asyncio.sleep(1.0)
    # A chunked upload at a normal pace, then another request on the same connection.
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(3) == b"abc"
    await asyncio.sleep(1.0)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert listener.timed_out == 0


async def test_connection_cap(listener: guard.Listener) -> None:
    held = [await _open(listener) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert len(listener.connections) == 3
    reader, writer = await _open(listener)
    answer = await asyncio.wait_for(reader.read(), 3)
    assert answer.startswith(b"HTTP/1.1 503 ")  # refused at once, then closed
    writer.close()
    assert listener.refused == 1
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    assert not listener.connections
    # Below the cap again: a normal client works.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{listener.port}/") as resp,
    ):
        assert resp.status == 200


def _tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Return (server, client) contexts around a self-signed certificate for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return server_ctx, ssl.create_default_context(cafile=str(tmp_path / "c.pem"))


@contextlib.asynccontextmanager
async def _tls_listener(server_ctx: ssl.SSLContext) -> AsyncIterator[guard.Listener]:
    app = web.Application()
    app.router.add_get("/", _echo)
    app.router.add_get("/peer", _peer)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    site = guard.Listener(LIMITS)
    await site.start(runner.server, "127.0.0.1", 0, ssl_context=server_ctx)
    try:
        yield site
    finally:
        site.close()
        await runner.cleanup()


async def _peer(request: web.Request) -> web.Response:
    # What EST and the admin API read from the connection: the address and the TLS object.
    tls = request.transport.get_extra_info("ssl_object") if request.transport else None
    return web.Response(text=f"{request.remote} {tls.version() if tls else None}")


async def _get(site: guard.Listener, client_ctx: ssl.SSLContext) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"https://localhost:{site.port}/", ssl=client_ctx) as resp,
    ):
        return resp.status


def _on(loop: str, scenario: Coroutine[Any, Any, None]) -> None:
    """Run ``scenario`` on the default asyncio loop or on uvloop (what `privca serve` runs)."""
    if loop == "uvloop":
        uvloop.run(scenario)
    else:
        asyncio.run(scenario)


LOOPS: Final = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_tls_listener_cuts_slow_heads_and_serves_clients(tmp_path: Path, loop: str) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)

    async def scenario() -> None:
        async with _tls_listener(server_ctx) as site:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", site.port, ssl=client_ctx, server_hostname="localhost"
            )
            took = await _dribble(writer, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100)
            assert await _closed(reader)
            assert took < 3.0
            writer.close()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"https://localhost:{site.port}/peer", ssl=client_ctx) as resp,
            ):
                assert await resp.text() == "127.0.0.1 TLSv1.3"

    _on(loop, scenario())


async def _raw(site: guard.Listener, first: bytes = b"") -> socket.socket:
    """Open a plain TCP connection to ``site`` and send ``first`` (no TLS)."""
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", site.port))
    if first:
        await asyncio.get_running_loop().sock_sendall(sock, first)
    return sock


async def _ended(sock: socket.socket, within: float) -> bool:
    """Return whether the server closed ``sock`` within ``within`` seconds."""
    try:
        while await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), within):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def _settle(site: guard.Listener, count: int) -> None:
    for _ in range(50):
        if len(site.connections) == count:
            return
        await asyncio.sleep(0.02)
    assert len(site.connections) == count


@LOOPS
def test_tls_handshakes_in_progress_count_toward_the_cap(tmp_path: Path, loop: str) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)

    async def scenario() -> None:
        async with _tls_listener(server_ctx) as site:
            # Two TCP connections that never start their handshake are counted at once.
            held = [await _raw(site), await _raw(site, _CLIENT_HELLO_START)]
            await _settle(site, 2)
            # The third (the cap) completes its handshake and is served: admitted at accept.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", site.port, ssl=client_ctx, server_hostname="localhost"
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            assert head.startswith(b"HTTP/1.1 200")
            assert len(site.connections) == 3
            # Beyond the cap a TCP connection is closed at once, long before any deadline.
            extra = await _raw(site)
            assert await _ended(extra, within=0.3)
            extra.close()
            assert site.refused == 1
            writer.close()
            for sock in held:
                sock.close()
            await _settle(site, 0)
            assert await _get(site, client_ctx) == 200

    _on(loop, scenario())


@LOOPS
def test_unfinished_tls_handshakes_are_dropped_and_uncounted(tmp_path: Path, loop: str) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)

    async def scenario() -> None:
        async with _tls_listener(server_ctx) as site:
            silent = await _raw(site)
            partial = await _raw(site, _CLIENT_HELLO_START)
            plain = await _raw(site, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # Not TLS at all: the handshake fails at once and the connection is uncounted.
            assert await _ended(plain, within=1.0)
            await _settle(site, 2)
            started = time.monotonic()
            # The handshake deadline (the head deadline, 0.6 s), not the loop's 60 s default.
            assert await _ended(silent, within=3.0)
            assert await _ended(partial, within=3.0)
            assert time.monotonic() - started < 2.0
            for sock in (silent, partial, plain):
                sock.close()
            await _settle(site, 0)
            assert await _get(site, client_ctx) == 200

    _on(loop, scenario())


@LOOPS
def test_tls_listener_backs_off_while_out_of_descriptors(
    tmp_path: Path, loop: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE from accept(): a line per pause, no busy loop, and the queued client is served."""
    server_ctx, client_ctx = _tls_pair(tmp_path)
    retry = 0.2
    monkeypatch.setattr(guard, "_ACCEPT_RETRY_SECONDS", retry)
    failed_at: list[float] = []
    real_accept = socket.socket.accept

    def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
        if len(failed_at) < 3:
            failed_at.append(time.monotonic())
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_accept(sock)

    async def scenario() -> None:
        async with _tls_listener(server_ctx) as site:
            monkeypatch.setattr(socket.socket, "accept", accept)
            # The client waits in the backlog through three failed accepts, then is served.
            assert await _get(site, client_ctx) == 200
            assert await _get(site, client_ctx) == 200
            await _settle(site, 0)

    _on(loop, scenario())
    assert len(failed_at) == 3
    # The socket stays readable: without the pause accept() would be retried at once.
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed_at)]
    assert all(gap >= retry * 0.9 for gap in gaps), gaps
    lines = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert [r.name for r in lines] == ["protocols.common.guard"] * 3
    assert all(r.levelno == logging.ERROR and r.exc_info is None for r in lines)
    assert "Too many open files" in lines[0].getMessage()
    # Nothing escaped to the loop's exception handler ("Exception in callback ...").
    assert not [r for r in caplog.records if r.exc_info], caplog.text
