"""The real validation ports over loopback sockets: http-01 fetch, tls-alpn-01 probe, DNS errors."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.acme import network
from server.ca.acme import api as acme_api
from server.ca.acme import validation
from tests.protocols.acme.test_flow import alpn_cert

AiohttpServer = Any

# These tests serve on loopback, which validation refuses by default: re-open it.
LOOPBACK_ALLOWED = validation.ValidationSettings(
    allow_targets=(ipaddress.ip_network("127.0.0.0/8"),)
)


def loopback_ok(address: str) -> bool:
    return validation.target_permitted(address, LOOPBACK_ALLOWED)


async def test_http01_fetch_sends_host_header_and_caps_body(aiohttp_server: AiohttpServer) -> None:
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(request.headers["Host"])
        return web.Response(text="x" * 20000)

    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", token)
    server = await aiohttp_server(app, host="127.0.0.1")
    fetcher = network.AiohttpFetcher(loopback_ok)
    try:
        result = await fetcher.fetch(
            address="127.0.0.1",
            port=server.port,
            host="web.internal",
            path="/.well-known/acme-challenge/abc",
        )
    finally:
        await fetcher.close()
    assert result.status == 200
    assert len(result.body) == 8192
    assert seen == ["web.internal"]


async def test_http01_fetch_refused_is_connection_error(unused_tcp_port: int) -> None:
    fetcher = network.AiohttpFetcher(loopback_ok)
    try:
        with pytest.raises(acme_api.NetworkError) as err:
            await fetcher.fetch(address="127.0.0.1", port=unused_tcp_port, host="a", path="/x")
    finally:
        await fetcher.close()
    assert err.value.kind == "connection"


async def _alpn_server(
    der: bytes, key_pem: bytes, protocols: list[str]
) -> tuple[asyncio.Server, int]:
    tmp = Path(tempfile.mkdtemp())
    cert = x509.load_der_x509_certificate(der)
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    ctx.set_alpn_protocols(protocols)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    return server, port


@pytest.mark.parametrize(
    ("protocols", "ok"),
    [(["acme-tls/1"], True), (["http/1.1"], False)],
    ids=["ok/acme-tls", "fail/no-acme-alpn"],
)
async def test_tls_alpn_probe(protocols: list[str], ok: bool) -> None:
    der, key_pem = alpn_cert_with_key("alpn.internal", "tok.thumb")
    server, port = await _alpn_server(der, key_pem, protocols)
    prober = network.AlpnProber(loopback_ok)
    try:
        if ok:
            got = await prober.probe(address="127.0.0.1", port=port, server_name="alpn.internal")
            assert got == der
            ident = acme_api.Identifier(acme_api.IdentifierType.DNS, "alpn.internal")
            assert validation.check_alpn_certificate(got, ident, "tok.thumb") is None
        else:
            with pytest.raises(acme_api.NetworkError) as err:
                await prober.probe(address="127.0.0.1", port=port, server_name="alpn.internal")
            assert err.value.kind == "tls"
    finally:
        server.close()
        await server.wait_closed()


def alpn_cert_with_key(name: str, key_auth: str) -> tuple[bytes, bytes]:
    """Return a tls-alpn-01 certificate and its key (PEM) for a real TLS server."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = alpn_cert(name, key_auth, key=key)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return der, pem


async def test_dns_resolver_without_server_is_dns_error(unused_udp_port: int) -> None:
    resolver = network.DnsResolver(f"127.0.0.1:{unused_udp_port}", timeout=0.5)
    with pytest.raises(acme_api.NetworkError) as err:
        await resolver.txt("_acme-challenge.a.internal")
    assert err.value.kind == "dns"


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "169.254.169.254", "::1"])
async def test_default_ports_never_connect_to_denied_targets(
    aiohttp_server: AiohttpServer, address: str
) -> None:
    # Issue 13: http-01/tls-alpn-01 connected to whatever the identifier named.
    hits: list[str] = []

    async def token(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="answer")

    app = web.Application()
    app.router.add_get("/{tail:.*}", token)
    server = await aiohttp_server(app, host="127.0.0.1")
    ports = network.default_ports()
    try:
        with pytest.raises(acme_api.NetworkError) as fetched:
            await ports.http.fetch(address=address, port=server.port, host="a", path="/x")
        with pytest.raises(acme_api.NetworkError) as probed:
            await ports.tls.probe(address=address, port=server.port, server_name="a")
    finally:
        await ports.http.close()  # type: ignore[attr-defined]
    assert hits == []
    assert (fetched.value.kind, probed.value.kind) == ("connection", "connection")
    # A literal is refused before connecting; a name whose addresses are all denied
    # fails in the resolver, which the client sees as a plain fetch failure.
    expected = "could not fetch" if address == "localhost" else "not a permitted validation target"
    assert expected in fetched.value.detail
    assert "not a permitted validation target" in probed.value.detail


def test_target_permitted() -> None:
    plain = validation.ValidationSettings()
    for denied in (
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 - a target, not a bind address
        "::1",
        "fe80::1",
        "224.0.0.1",
        "::ffff:127.0.0.1",
        "ff02::1",
        "not-an-ip",
    ):
        assert not validation.target_permitted(denied, plain), denied
    for allowed in ("10.0.0.1", "192.168.1.1", "172.16.0.1", "8.8.8.8", "2001:db8::1"):
        assert validation.target_permitted(allowed, plain), allowed
    test_mode = validation.ValidationSettings(resolve_all_to="127.0.0.1")
    assert validation.target_permitted("127.0.0.1", test_mode)
    assert not validation.target_permitted("127.0.0.2", test_mode)
    assert validation.target_permitted("127.0.0.2", LOOPBACK_ALLOWED)
