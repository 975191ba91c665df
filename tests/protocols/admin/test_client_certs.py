"""Admin client certificates over real TLS, and the wall between admin and EST certificates.

The listener's handshake trusts EST's anchors and the admin CA; each front end then
checks its own: the admin API takes only live certificates of the admin CA bound to
an identity, EST never takes an admin certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from protocols.admin import links, routes
from server.app import server_ssl_context
from server.ca import grants
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.types import AuditEvent, KeyAlgorithm, Principal
from server.store.admin_repository import SqlAdminRepository
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from server.wiring import TlsFiles
from tests.protocols.admin.conftest import OP, AdminEnv

ServerFactory = Callable[..., Awaitable[TestServer]]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


async def _server(
    env: AdminEnv, tmp_path: Path, aiohttp_server: ServerFactory, est: est_api.EstService
) -> tuple[TestServer, Path]:
    issued = await env.engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([]),
        names=[x509.DNSName("localhost")],
        ca="teamA",
    )
    files = TlsFiles(cert=tmp_path / "s.pem", key=tmp_path / "s.key", bundle=tmp_path / "ca.pem")
    files.cert.write_bytes(_pem(issued.certificate, *issued.chain[:-1]))
    files.key.write_bytes(issued.private_key_pem or b"")
    files.bundle.write_bytes(_pem(issued.chain[-1]))
    anchors = [*await est.tls_trust_anchors(), *await env.service.admin_anchors()]
    app = web.Application()
    app.add_subapp(links.PREFIX, routes.build_app(env.service))
    server = await aiohttp_server(app, ssl=server_ssl_context(files, anchors))
    return server, files.bundle


def _client_ctx(
    bundle: Path, tmp_path: Path, cert_pem: bytes | None, key_pem: bytes | None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if cert_pem is not None and key_pem is not None:
        (tmp_path / "c.pem").write_bytes(cert_pem)
        (tmp_path / "c.key").write_bytes(key_pem)
        ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
    return ctx


async def _whoami(server: TestServer, ctx: ssl.SSLContext) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://localhost:{server.port}{links.PREFIX}/whoami", ssl=ctx) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.fixture
def est(env: AdminEnv, database: Database) -> est_api.EstService:
    return est_api.EstService(env.engine, SqlEstRepository(database))


async def test_admin_cert_logs_in_and_stops_when_revoked(
    env: AdminEnv, est: est_api.EstService, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    server, bundle = await _server(env, tmp_path, aiohttp_server, est)
    issued = await env.service.create_certificate(
        "carol", role=admin_api.Role.ISSUER, scope="teamA", lifetime=timedelta(days=30), actor=OP
    )
    ctx = _client_ctx(bundle, tmp_path, _pem(issued.certificate), issued.private_key_pem)
    status, body = await _whoami(server, ctx)
    assert status == 200, body
    assert body == {
        "name": "carol",
        "role": "issuer",
        "scope": "teamA",
        "via": "certificate",
        "permissions": ["cert.issue", "cert.revoke", "read"],
    }
    await env.service.revoke_certificate_identity("carol", actor=OP)
    ctx = _client_ctx(bundle, tmp_path, _pem(issued.certificate), issued.private_key_pem)
    status, body = await _whoami(server, ctx)
    assert status == 401
    assert body["detail"] == "the admin certificate is revoked"
    (denial,) = [d for d in await env.denials() if d.actor == "admin:carol"]
    assert denial.source == "127.0.0.1"


async def test_admin_cert_revoked_at_the_ca_alone_stops_working(
    env: AdminEnv, est: est_api.EstService, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    """Revoking the certificate itself (not the identity) is enough."""
    server, bundle = await _server(env, tmp_path, aiohttp_server, est)
    issued = await env.service.create_certificate(
        "dave", role=admin_api.Role.OWNER, scope=None, lifetime=timedelta(days=30), actor=OP
    )
    admin_ca = await env.engine.get_ca("privca-admin")
    await env.engine.revoke(issued.record.serial, principal=OP, ca=admin_ca.id)
    ctx = _client_ctx(bundle, tmp_path, _pem(issued.certificate), issued.private_key_pem)
    status, body = await _whoami(server, ctx)
    assert status == 401
    assert body["detail"] == "the admin certificate is revoked"


async def test_ordinary_client_cert_gets_401(
    env: AdminEnv, est: est_api.EstService, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    """A clientAuth certificate of an issuing CA (what EST devices hold) is no admin identity."""
    server, bundle = await _server(env, tmp_path, aiohttp_server, est)
    leaf = await env.engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-client",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")]),
        ca="teamA",
    )
    ctx = _client_ctx(
        bundle, tmp_path, _pem(leaf.certificate, *leaf.chain[:-1]), leaf.private_key_pem
    )
    status, body = await _whoami(server, ctx)
    assert status == 401
    assert body["detail"] == "the client certificate is not from the admin CA"
    # Without any credentials: 401 too.
    status, _ = await _whoami(server, _client_ctx(bundle, tmp_path, None, None))
    assert status == 401


async def test_admin_cert_gets_no_est_login(env: AdminEnv, est: est_api.EstService) -> None:
    issued = await env.service.create_certificate(
        "erin", role=admin_api.Role.OWNER, scope=None, lifetime=timedelta(days=30), actor=OP
    )
    anchors = await est.tls_trust_anchors()
    assert issued.chain[-1] not in anchors
    label = est_api.EstLabel(name="devices", ca="teamA", profile="tls-client")
    await est.add_label(label, actor=OP)
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(EngineError) as err:
        await est.authenticate_certificate(label, der, for_reenroll=False)
    assert err.value.kind is ProblemKind.UNAUTHORIZED


@pytest.mark.parametrize(
    ("principal", "profile", "ca"),
    [
        pytest.param(
            Principal("acme", "acct1"), "admin-client", "privca-admin", id="deny/acme-on-admin-ca"
        ),
        pytest.param(
            Principal("est", "dev1"), "admin-client", "privca-admin", id="deny/est-on-admin-ca"
        ),
        pytest.param(OP, "tls-client", "privca-admin", id="deny/admin-ca-other-profile"),
        pytest.param(OP, "admin-client", "teamA", id="deny/admin-profile-elsewhere"),
    ],
)
async def test_admin_ca_issues_admin_certs_only(
    env: AdminEnv, principal: Principal, profile: str, ca: str
) -> None:
    with pytest.raises(EngineError) as err:
        await env.engine.issue_with_generated_key(
            grant=grants.OPERATOR,
            principal=principal,
            profile=profile,
            key_algorithm=KeyAlgorithm.EC_P256,
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]),
            ca=ca,
        )
    assert err.value.kind in {ProblemKind.UNAUTHORIZED, ProblemKind.POLICY}
    assert "ca.kind" in err.value.detail


async def test_admin_ca_is_invisible_to_the_api(env: AdminEnv) -> None:
    token = await env.token("root-owner", admin_api.Role.OWNER, None)
    status, body, _ = await env.call("GET", "/cas", token=token)
    assert status == 200
    assert [c["name"] for c in body["items"]] == ["root", "teamA", "teamB"]
    for path in ("/cas/privca-admin", "/cas/privca-admin/disable"):
        method = "GET" if path.endswith("admin") else "POST"
        status, body, _ = await env.call(method, path, token=token)
        assert status == 404, body
    with pytest.raises(EngineError):
        await env.engine.create_subordinate("under-admin", parent="privca-admin", actor=OP)


async def test_admin_cert_checks_without_tls(env: AdminEnv, database: Database) -> None:
    """Each rule of the certificate login on its own: binding, its revocation, validity."""
    issued = await env.service.create_certificate(
        "frank", role=admin_api.Role.AUDITOR, scope="teamB", lifetime=timedelta(days=2), actor=OP
    )
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    who = await env.service.authenticate_certificate(der, address="192.0.2.1", action="GET /x")
    assert (who.name, who.role, who.scope, who.via) == ("frank", "auditor", "teamB", "certificate")
    # The binding revoked while the certificate is still good at the CA: refused.
    await SqlAdminRepository(database).revoke_certificates(
        "frank",
        at=env.engine.now(),
        audit=AuditEvent(at=env.engine.now(), actor="test", action="t", target="frank"),
    )
    with pytest.raises(EngineError) as err:
        await env.service.authenticate_certificate(der, address="192.0.2.1", action="GET /x")
    assert err.value.kind is ProblemKind.UNAUTHENTICATED
    assert err.value.detail == "the admin certificate is revoked"
    # Past notAfter: refused.
    issued = await env.service.create_certificate(
        "gina", role=admin_api.Role.AUDITOR, scope=None, lifetime=timedelta(days=2), actor=OP
    )
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    env.clock.advance(timedelta(days=3))
    with pytest.raises(EngineError) as err:
        await env.service.authenticate_certificate(der, address="192.0.2.1", action="GET /x")
    assert err.value.detail == "the client certificate is not within its validity period"
    denials = [d for d in await env.denials() if d.source == "192.0.2.1"]
    assert [d.actor for d in denials] == ["admin:gina", "admin:frank"]
