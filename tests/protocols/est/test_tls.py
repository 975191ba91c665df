"""EST over real TLS: client certificates from the handshake, and the listener's trust anchors."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.app import server_ssl_context
from server.ca import grants
from server.ca.est import api as est_api
from server.ca.types import KeyAlgorithm
from server.tls_anchors import ClientAnchors
from server.wiring import TlsFiles
from tests.protocols.est.conftest import (
    OP,
    PKCS10,
    PREFIX,
    EstEnv,
    b64,
    basic,
    certs_from_body,
    csr_der,
    external_leaf,
    label_app,
    make_external_ca,
    rfc9440,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


async def _tls_server(
    env: EstEnv,
    tmp_path: Path,
    aiohttp_server: ServerFactory,
    extra_anchors: list[x509.Certificate],
) -> tuple[TestServer, Path, ssl.SSLContext]:
    issued = await env.engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([]),
        names=[x509.DNSName("localhost")],
    )
    files = TlsFiles(cert=tmp_path / "s.pem", key=tmp_path / "s.key", bundle=tmp_path / "ca.pem")
    files.cert.write_bytes(_pem(issued.certificate, *issued.chain[:-1]))
    files.key.write_bytes(issued.private_key_pem or b"")
    files.bundle.write_bytes(_pem(env.chain[-1]))
    anchors = await env.service.tls_trust_anchors()
    ctx = server_ssl_context(files, [*anchors, *extra_anchors])
    server = await aiohttp_server(label_app(env.service), ssl=ctx)
    return server, files.bundle, ctx


def _client_ctx(
    bundle: Path, tmp_path: Path, cert: x509.Certificate | None, key: Any
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if cert is not None:
        (tmp_path / "c.pem").write_bytes(_pem(cert))
        (tmp_path / "c.key").write_bytes(_key_pem(key))
        ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    return ctx


async def test_enroll_then_reenroll_with_tls_client_cert(
    est_env: EstEnv, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    server, bundle, _ = await _tls_server(est_env, tmp_path, aiohttp_server, [])
    base = f"https://localhost:{server.port}{PREFIX}"
    der, key = csr_der("fire-sensor-123")
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, None, None)
        async with session.post(
            f"{base}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}, ssl=ctx
        ) as resp:
            assert resp.status == 200
            (cert,) = certs_from_body(await resp.read())
    der2, _ = csr_der("fire-sensor-123")
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, cert, key)
        async with session.post(
            f"{base}/simplereenroll", data=b64(der2), headers=PKCS10, ssl=ctx
        ) as resp:
            assert resp.status == 200, await resp.text()
            (renewed,) = certs_from_body(await resp.read())
    assert renewed.subject == cert.subject
    # Without its certificate the same client cannot renew.
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, None, None)
        async with session.post(
            f"{base}/simplereenroll", data=b64(der2), headers=PKCS10, ssl=ctx
        ) as resp:
            assert resp.status == 401


async def test_tls_refuses_expired_and_untrusted_client_certs(
    est_env: EstEnv, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    ext_ca, ext_key = make_external_ca()
    await est_env.service.add_label(
        est_api.EstLabel(name="factory", trust_anchors_pem=_pem(ext_ca)), actor=OP
    )
    server, bundle, _ = await _tls_server(est_env, tmp_path, aiohttp_server, [])
    base = f"https://localhost:{server.port}{PREFIX}"
    der, _ = csr_der("ldevid-1")
    idevid, idevid_key = external_leaf(ext_ca, ext_key)
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, idevid, idevid_key)
        async with session.post(
            f"{base}/factory/simpleenroll", data=b64(der), headers=PKCS10, ssl=ctx
        ) as resp:
            assert resp.status == 200, await resp.text()
    before = await est_env.cert_count()
    # Expired: the handshake lets it through, EST refuses it with 403 and a reason.
    expired, expired_key = external_leaf(ext_ca, ext_key, expired=True)
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, expired, expired_key)
        async with session.post(
            f"{base}/factory/simpleenroll", data=b64(der), headers=PKCS10, ssl=ctx
        ) as resp:
            assert resp.status == 403
            assert "expired" in await resp.text()
    # Untrusted: Python's TLS stack refuses it in the handshake; no HTTP exchange happens.
    other_ca, other_key = make_external_ca("Stranger CA")
    stranger, stranger_key = external_leaf(other_ca, other_key)
    async with aiohttp.ClientSession() as session:
        ctx = _client_ctx(bundle, tmp_path, stranger, stranger_key)
        with pytest.raises(aiohttp.ClientError):
            async with session.post(
                f"{base}/factory/simpleenroll", data=b64(der), headers=PKCS10, ssl=ctx
            ) as resp:
                await resp.read()
    assert await est_env.cert_count() == before


async def test_client_cert_header_ignored_from_untrusted_address(
    est_env: EstEnv, aiohttp_client: Callable[..., Awaitable[Any]]
) -> None:
    client = await aiohttp_client(label_app(est_env.service, trusted_proxies=["10.9.9.9/32"]))
    der, _ = csr_der()
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    (cert,) = certs_from_body(await resp.read())
    resp = await client.post(
        f"{PREFIX}/simplereenroll", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
    )
    assert resp.status == 401
    # A custom header name configured for the proxy is honoured.
    client2 = await aiohttp_client(
        label_app(est_env.service, trusted_proxies=["127.0.0.0/8"], client_cert_header="X-SSL-Cert")
    )
    resp = await client2.post(
        f"{PREFIX}/simplereenroll", data=b64(der), headers={**PKCS10, "X-SSL-Cert": rfc9440(cert)}
    )
    assert resp.status == 200


async def test_anchor_of_a_label_added_while_serving_is_trusted_after_refresh(
    est_env: EstEnv, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    """A label created while privca runs: its devices complete the handshake after a refresh."""
    server, bundle, ctx = await _tls_server(est_env, tmp_path, aiohttp_server, [])
    anchors = ClientAnchors(
        ctx, est_env.service.tls_trust_anchors, await est_env.service.tls_trust_anchors()
    )
    assert await anchors.refresh() == 0
    ext_ca, ext_key = make_external_ca("Late Factory CA")
    await est_env.service.add_label(
        est_api.EstLabel(name="late", trust_anchors_pem=_pem(ext_ca)), actor=OP
    )
    idevid, idevid_key = external_leaf(ext_ca, ext_key)
    url = f"https://localhost:{server.port}{PREFIX}/late/simpleenroll"
    der, _ = csr_der("late-device-1")
    client = _client_ctx(bundle, tmp_path, idevid, idevid_key)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):  # not loaded yet: refused in the handshake
            async with session.post(url, data=b64(der), headers=PKCS10, ssl=client) as resp:
                await resp.read()
    assert await anchors.refresh() == 1
    assert await anchors.refresh() == 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=b64(der), headers=PKCS10, ssl=client) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def test_listener_mints_no_session_tickets(
    est_env: EstEnv, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    """TLS 1.3 tickets cost a session copy per handshake and serve no privca client."""
    server, bundle, _ = await _tls_server(est_env, tmp_path, aiohttp_server, [])
    ctx = _client_ctx(bundle, tmp_path, None, None)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=ctx, server_hostname="localhost"
    )
    writer.write(f"GET {PREFIX}/cacerts HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await reader.read(1)  # tickets, when sent, arrive after the handshake with the first data
    tls = writer.get_extra_info("ssl_object")
    assert tls.version() == "TLSv1.3"
    assert tls.session is not None
    assert not tls.session.has_ticket
    writer.close()
