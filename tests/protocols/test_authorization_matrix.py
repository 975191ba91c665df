"""Issue 12's authorization matrix: every front end x every way a request must be refused.

Front ends: ACME (the aiohttp app with a JWS client), EST over HTTP Basic, EST
with a TLS client certificate (a real handshake), EST with a client certificate
forwarded by a trusted proxy (RFC 9440 ``Client-Cert``) and the CLI
(``privca cert issue``). Rows: wrong principal, ungranted name, another label's
or directory's CA, another profile, disabled CA, revoked CA, expired or revoked
client certificate. Each cell asserts the protocol's own refusal (ACME problem
type and status, EST status and the text naming the rule, CLI exit code and
stderr) and that no certificate was stored. Cells that cannot happen on a front
end (a client certificate over ACME, a principal at the CLI) are absent.
"""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.acme import routes as acme_routes
from protocols.est import routes as est_routes
from server.app import server_ssl_context
from server.ca import api, grants
from server.ca.acme import api as acme_api
from server.ca.est import api as est_api
from server.ca.types import CertQuery, KeyAlgorithm, Principal, RevocationReason
from server.cli import main
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from server.wiring import TlsFiles
from tests.protocols.acme.support import AcmeClient, FakeNetwork, b64u
from tests.protocols.acme.support import csr_der as acme_csr
from tests.protocols.est.conftest import (
    PKCS10,
    b64,
    basic,
    certs_from_body,
    csr_der,
    external_leaf,
    make_external_ca,
    rfc9440,
)
from tests.support import TEST_SEALER, FakeClock

OP: Final = Principal("operator", "matrix")
EST: Final = "/.well-known/est"
PASSWORD: Final = "correct-horse-battery"
OTHER_PASSWORD: Final = "other-label-password"
ACME_SETTINGS: Final = acme_api.AcmeSettings(
    validation=acme_api.ValidationSettings(attempts=1, retry_delay=0.0, timeout=2.0)
)
# The "corp" directory: CA "other", names under corp.example, the tls-server profile only.
CORP: Final = acme_api.AcmeDirectory(
    name="corp",
    ca="other",
    profiles=("tls-server",),
    dns_suffixes=("corp.example",),
    wildcard=False,
)

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass
class Matrix:
    """Two CAs under one root, EST labels and ACME directories on each, one HTTP app."""

    engine: api.CAEngine
    est: est_api.EstService
    acme_default: acme_api.AcmeService
    dirs: acme_api.Directories
    network: FakeNetwork
    http: TestClient[Any, Any]
    clock: FakeClock
    vendor: tuple[x509.Certificate, Any]
    tmp: Path
    servers: list[TestServer] = field(default_factory=list)

    async def cert_count(self) -> int:
        return len(await self.engine.find_certificates(CertQuery(limit=100_000)))

    async def idle(self) -> None:
        await self.acme_default.orders.wait_idle()
        await (await self.dirs.service("corp")).orders.wait_idle()


@pytest.fixture
async def matrix(
    sql_engine: api.CAEngine,
    database: Database,
    aiohttp_client: ClientFactory,
    tmp_path: Path,
) -> AsyncIterator[Matrix]:
    """CAs root -> issuing (default) and root -> other; labels and directories on both.

    EST labels: ``default`` (CA issuing, device identities, user dev1), ``peer``
    (CA issuing too), ``other`` (CA other, user odev) and ``factory`` (a vendor's
    anchor, client certificates only). ACME: the default directory (CA issuing) and
    ``corp`` (CA other, ``CORP``'s policy).
    """
    engine = sql_engine
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)
    await engine.create_subordinate("other", parent="root", actor=OP, path_length=0)
    clock = FakeClock(datetime.now(UTC))
    est = est_api.EstService(engine, SqlEstRepository(database), clock=clock, retry_after=42)
    vendor, vendor_key = make_external_ca()
    await est.add_user("default", "dev1", PASSWORD, actor=OP)
    await est.add_label(est_api.EstLabel(name="peer"), actor=OP)
    await est.add_user("peer", "dev1", PASSWORD, actor=OP)
    await est.add_label(est_api.EstLabel(name="other", ca="other"), actor=OP)
    await est.add_user("other", "odev", OTHER_PASSWORD, actor=OP)
    await est.add_label(
        est_api.EstLabel(
            name="factory",
            auth_modes=frozenset({est_api.AuthMode.CERT}),
            trust_anchors_pem=vendor.public_bytes(serialization.Encoding.PEM),
        ),
        actor=OP,
    )
    network = FakeNetwork()
    repo = SqlAcmeRepository(database, TEST_SEALER)
    default = acme_api.AcmeService(engine, repo, ports=network.ports(), settings=ACME_SETTINGS)
    dirs = acme_api.Directories(
        engine, repo, ports=network.ports(), settings=ACME_SETTINGS, config={"corp": CORP}
    )
    root = web.Application(client_max_size=64 * 1024)
    root.add_subapp(EST, est_routes.build_app(est, trusted_proxies=["127.0.0.1/32", "::1/128"]))
    root.add_subapp("/acme", acme_routes.build_app(default, directories=dirs))
    http = await aiohttp_client(root)
    env = Matrix(engine, est, default, dirs, network, http, clock, (vendor, vendor_key), tmp_path)
    yield env
    await env.idle()


# ---------------------------------------------------------------------------- ACME

ACME_CELLS: Final = {
    # cell: (HTTP status, problem type, detail fragment); every cell runs on directory corp
    "wrong-principal": (403, "unauthorized", "another ACME directory"),
    "unknown-account": (400, "accountDoesNotExist", ""),
    "ungranted-name": (400, "rejectedIdentifier", "grant.dns-suffix"),
    "ungranted-wildcard": (400, "rejectedIdentifier", "grant.wildcard"),
    "other-ca": (400, "accountDoesNotExist", ""),
    "other-profile": (400, "invalidProfile", "unknown profile 'shortlived'"),
    "disabled-ca": (403, "unauthorized", "ca.state: CA other is disabled"),
    "revoked-ca": (403, "unauthorized", "ca.state: CA other is revoked"),
}


async def _acme_account(env: Matrix, prefix: str, key: Any = None) -> AcmeClient:
    client = AcmeClient(env.http, key, prefix=prefix)
    reply = await client.new_account()
    assert reply.status == 201, reply.body
    return client


async def _acme_ready(env: Matrix, client: AcmeClient, name: str) -> dict[str, Any]:
    reply = await client.new_order(name)
    assert reply.status == 201, reply.body
    order: dict[str, Any] = reply.json()
    for url in order["authorizations"]:
        authz = (await client.get(url)).json()
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        env.network.http_answers[chall["token"]] = client.key_authorization(chall["token"])
        assert (await client.post(chall["url"], {})).status == 200
    await env.idle()
    return order


@pytest.mark.parametrize("cell", list(ACME_CELLS), ids=[f"acme/{c}" for c in ACME_CELLS])
async def test_acme_refuses(matrix: Matrix, cell: str) -> None:
    status, problem, detail = ACME_CELLS[cell]
    client = await _acme_account(matrix, "/acme/corp")
    # A control: the corp directory issues www.corp.example from CA "other".
    order = await _acme_ready(matrix, client, "www.corp.example")
    before = await matrix.cert_count()
    replies = []
    if cell == "wrong-principal":
        # The key of an account of the default directory (CA issuing) cannot make one here.
        elsewhere = await _acme_account(matrix, "/acme")
        replies.append(
            await AcmeClient(matrix.http, elsewhere.key, prefix="/acme/corp").new_account()
        )
    elif cell == "unknown-account":
        stranger = AcmeClient(matrix.http, prefix="/acme/corp")
        await stranger.directory()
        stranger.kid = stranger.url("/acme/corp/acct/no-such-account")
        replies.append(await stranger.new_order("www.corp.example"))
    elif cell == "ungranted-name":
        replies.append(await client.new_order("www.other.example"))
    elif cell == "ungranted-wildcard":
        replies.append(await client.new_order("*.corp.example"))
    elif cell == "other-ca":
        # An account of the default directory (CA issuing) by its own kid at corp.
        elsewhere = await _acme_account(matrix, "/acme")
        sneaky = AcmeClient(matrix.http, elsewhere.key, prefix="/acme/corp")
        await sneaky.directory()
        sneaky.kid = elsewhere.kid
        replies.append(await sneaky.new_order("www.corp.example"))
    elif cell == "other-profile":
        replies.append(await client.new_order("api.corp.example", profile="shortlived"))
    else:
        if cell == "disabled-ca":
            await matrix.engine.disable_ca("other", actor=OP)
        else:
            await matrix.engine.revoke_ca("other", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
        der, _ = acme_csr(["www.corp.example"])
        replies.append(await client.post(order["finalize"], {"csr": b64u(der)}))
        replies.append(await client.new_order("api.corp.example"))
    for reply in replies:
        assert reply.status == status, reply.body
        assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert reply.problem_type == problem
        assert detail in reply.json()["detail"]
    assert await matrix.cert_count() == before


async def test_acme_control_issues(matrix: Matrix) -> None:
    """The negative control of the ACME row: the same account and order are issued."""
    client = await _acme_account(matrix, "/acme/corp")
    order = await _acme_ready(matrix, client, "www.corp.example")
    before = await matrix.cert_count()
    der, _ = acme_csr(["www.corp.example"])
    done = await client.post(order["finalize"], {"csr": b64u(der)})
    assert done.status == 200, done.body
    assert await matrix.cert_count() == before + 1


# ---------------------------------------------------------------------------- EST

# A device CSR on the default label (a subject, no subjectAltName) is issued; the
# same request by the same client with one thing changed is refused.
DEVICE_CN: Final = "fire-sensor-123"


@dataclass(frozen=True, slots=True)
class EstCell:
    """One EST request: where, as whom (``who``), what, and the expected refusal."""

    status: int
    text: str
    label: str = "default"
    ops: tuple[str, ...] = ("simpleenroll",)
    who: str = "own"
    sans: tuple[x509.GeneralName, ...] = ()


BASIC_CELLS: Final = {
    "wrong-principal": EstCell(401, "", who="bad-password"),
    "unknown-account": EstCell(401, "", who="nobody"),
    "ungranted-name": EstCell(
        400,
        "grant.san-type: DNS names are not granted",
        ops=("simpleenroll", "serverkeygen"),
        sans=(x509.DNSName("vault.corp.internal"),),
    ),
    "other-ca": EstCell(401, "", who="other-label-account"),
    "disabled-ca": EstCell(
        403, "ca.state: CA issuing is disabled", ops=("simpleenroll", "serverkeygen")
    ),
    "revoked-ca": EstCell(
        403, "ca.state: CA issuing is revoked", ops=("simpleenroll", "serverkeygen")
    ),
}

CERT_CELLS: Final = {
    "wrong-principal": EstCell(
        403, "issued on label peer, not default", ops=("simpleenroll", "simplereenroll"), who="peer"
    ),
    "ungranted-name": EstCell(
        400,
        "grant.san-type: DNS names are not granted",
        label="factory",
        who="vendor",
        sans=(x509.DNSName("vault.corp.internal"),),
    ),
    "other-ca": EstCell(
        403,
        "not issued by CA issuing of label default",
        ops=("simpleenroll", "simplereenroll"),
        who="other",
    ),
    "other-profile": EstCell(
        403, "has profile tls-client; label default issues device", who="cli-tls-client"
    ),
    "other-profile-renewal": EstCell(
        403, "was not issued on label default", ops=("simplereenroll",), who="cli-tls-client"
    ),
    "disabled-ca": EstCell(
        403, "ca.state: CA issuing is disabled", ops=("simpleenroll", "simplereenroll")
    ),
    "revoked-ca": EstCell(
        403, "ca.state: CA issuing is revoked", ops=("simpleenroll", "simplereenroll")
    ),
    "expired-cert": EstCell(
        403, "expired or not yet valid", ops=("simpleenroll", "simplereenroll")
    ),
    "revoked-cert": EstCell(
        403, "the client certificate is revoked", ops=("simpleenroll", "simplereenroll")
    ),
    "not-client-auth": EstCell(403, "clientAuth", who="cli-tls-server"),
}

# Cells of the EST rows: "basic/<cell>", "header/<cell>", "tls/<cell>".
EST_CELLS: Final = [
    *(("basic", c) for c in BASIC_CELLS),
    *(("header", c) for c in CERT_CELLS),
    *(("tls", c) for c in CERT_CELLS),
]


async def _enroll_basic(
    env: Matrix, label: str, user: str, password: str
) -> tuple[x509.Certificate, Any]:
    at = EST if label == "default" else f"{EST}/{label}"
    der, key = csr_der(DEVICE_CN)
    resp = await env.http.post(
        f"{at}/simpleenroll", data=b64(der), headers={**PKCS10, **basic(user, password)}
    )
    assert resp.status == 200, await resp.text()
    (cert,) = certs_from_body(await resp.read())
    return cert, key


async def _cli_cert(env: Matrix, profile: str) -> tuple[x509.Certificate, Any]:
    issued = await env.engine.issue_with_generated_key(
        principal=OP,
        grant=grants.OPERATOR,
        profile=profile,
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name.from_rfc4514_string(f"CN={DEVICE_CN}"),
        names=[x509.DNSName("sensor.internal")],
    )
    key = serialization.load_pem_private_key(issued.private_key_pem or b"", None)
    return issued.certificate, key


async def _client_cert(env: Matrix, who: str) -> tuple[x509.Certificate, Any]:
    if who == "own":
        return await _enroll_basic(env, "default", "dev1", PASSWORD)
    if who == "peer":
        return await _enroll_basic(env, "peer", "dev1", PASSWORD)
    if who == "other":
        return await _enroll_basic(env, "other", "odev", OTHER_PASSWORD)
    if who == "vendor":
        return external_leaf(env.vendor[0], env.vendor[1], "idevid-0001")
    return await _cli_cert(env, who.removeprefix("cli-"))


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


async def _tls_server(env: Matrix, aiohttp_server: ServerFactory) -> tuple[TestServer, Path]:
    """The EST app behind a real TLS listener trusting what privca's listener trusts."""
    issued = await env.engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        key_algorithm=KeyAlgorithm.EC_P256,
        subject=x509.Name([]),
        names=[x509.DNSName("localhost")],
    )
    tmp = env.tmp
    files = TlsFiles(cert=tmp / "s.pem", key=tmp / "s.key", bundle=tmp / "ca.pem")
    files.cert.write_bytes(_pem(issued.certificate, *issued.chain[:-1]))
    files.key.write_bytes(issued.private_key_pem or b"")
    files.bundle.write_bytes(_pem(issued.chain[-1]))
    ctx = server_ssl_context(files, await env.est.tls_trust_anchors())
    root = web.Application()
    root.add_subapp(EST, est_routes.build_app(env.est))
    return await aiohttp_server(root, ssl=ctx), files.bundle


async def _tls_post(
    server: TestServer,
    bundle: Path,
    tmp: Path,
    url: str,
    der: bytes,
    cert: x509.Certificate | None,
    key: Any,
) -> tuple[int, str]:
    assert cert is not None
    ctx = ssl.create_default_context(cafile=str(bundle))
    (tmp / "c.pem").write_bytes(_pem(cert))
    (tmp / "c.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx.load_cert_chain(tmp / "c.pem", tmp / "c.key")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://localhost:{server.port}{url}", data=b64(der), headers=PKCS10, ssl=ctx
        ) as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    ("front", "cell"), EST_CELLS, ids=[f"est-{front}/{cell}" for front, cell in EST_CELLS]
)
async def test_est_refuses(
    matrix: Matrix, aiohttp_server: ServerFactory, front: str, cell: str
) -> None:
    spec = (BASIC_CELLS if front == "basic" else CERT_CELLS)[cell]
    at = EST if spec.label == "default" else f"{EST}/{spec.label}"
    headers: dict[str, str] = {}
    cert: x509.Certificate | None = None
    key: Any = None
    if front == "basic":
        user, password = {
            "own": ("dev1", PASSWORD),
            "bad-password": ("dev1", "wrong-password"),
            "nobody": ("nobody", PASSWORD),
            "other-label-account": ("odev", OTHER_PASSWORD),
        }[spec.who]
        headers = basic(user, password)
    else:
        cert, key = await _client_cert(matrix, spec.who)
    server, bundle = (None, None)
    if front == "tls":
        # The listener is up before the CA's state changes, so the handshake succeeds
        # and the refusal is EST's own.
        server, bundle = await _tls_server(matrix, aiohttp_server)
    if cell == "disabled-ca":
        await matrix.engine.disable_ca("issuing", actor=OP)
    elif cell == "revoked-ca":
        await matrix.engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    elif cell == "expired-cert":
        assert cert is not None
        matrix.clock.current = cert.not_valid_after_utc + timedelta(seconds=1)
    elif cell == "revoked-cert":
        assert cert is not None
        await matrix.engine.revoke(cert.serial_number, principal=OP)
    if front == "header":
        assert cert is not None
        headers = {"Client-Cert": rfc9440(cert)}
    # Same subject as the client's certificate: only the cell's one change is refused.
    der, _ = csr_der(DEVICE_CN, sans=spec.sans)
    before = await matrix.cert_count()
    for op in spec.ops:
        if server is not None and bundle is not None and cell == "not-client-auth":
            # OpenSSL refuses a client certificate without clientAuth in the handshake.
            with pytest.raises(aiohttp.ClientError):
                await _tls_post(server, bundle, matrix.tmp, f"{at}/{op}", der, cert, key)
            continue
        if server is not None and bundle is not None:
            status, text = await _tls_post(server, bundle, matrix.tmp, f"{at}/{op}", der, cert, key)
        else:
            resp = await matrix.http.post(
                f"{at}/{op}", data=b64(der), headers={**PKCS10, **headers}
            )
            status, text = resp.status, await resp.text()
        assert status == spec.status, (op, text)
        assert spec.text in text, op
    assert await matrix.cert_count() == before
    assert await matrix.est.list_pending(None) == []


@pytest.mark.parametrize(
    "front", ["basic", "header"], ids=["est-basic/control", "est-header/control"]
)
async def test_est_control_issues(matrix: Matrix, front: str) -> None:
    """The negative control of the EST rows: the unchanged request is issued."""
    cert, _ = await _enroll_basic(matrix, "default", "dev1", PASSWORD)
    headers = basic() if front == "basic" else {"Client-Cert": rfc9440(cert)}
    ops = ("simpleenroll",) if front == "basic" else ("simpleenroll", "simplereenroll")
    for op in ops:
        der, _ = csr_der(DEVICE_CN)
        resp = await matrix.http.post(f"{EST}/{op}", data=b64(der), headers={**PKCS10, **headers})
        assert resp.status == 200, (op, await resp.text())


# ---------------------------------------------------------------------------- CLI

CLI_CELLS: Final = {
    # cell: (CA, extra arguments, what is done first, stderr fragment)
    "ungranted-name": ("corp", ["--san", "dns:www.other.example"], None, "www.other.example"),
    "other-profile": (
        "sub",
        ["--profile", "no-such-profile", "--san", "dns:x.internal"],
        None,
        "no-such-profile",
    ),
    "disabled-ca": (
        "sub",
        ["--san", "dns:x.internal"],
        ["ca", "disable", "sub"],
        "ca.state: CA sub is disabled",
    ),
    "revoked-ca": (
        "sub",
        ["--san", "dns:x.internal"],
        ["ca", "revoke", "sub", "--reason", "keyCompromise"],
        "ca.state: CA sub is revoked",
    ),
    "under-revoked-ca": (
        "under",
        ["--san", "dns:x.internal"],
        ["ca", "revoke", "sub", "--reason", "superseded"],
        "is revoked",
    ),
}


def _privca(data: Path, *args: str) -> int:
    return main([*args[:2], "--data-dir", str(data), *args[2:]])


@pytest.fixture(scope="module")
def cli_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with root -> sub -> under and corp (DNS suffix corp.example), made once."""
    os.environ.pop("PRIVCA_KEY_PASSPHRASE", None)
    data = tmp_path_factory.mktemp("cli") / "data"
    assert _privca(data, "ca", "create-root", "root") == 0
    assert _privca(data, "ca", "create-sub", "sub", "--parent", "root") == 0
    assert _privca(data, "ca", "create-sub", "under", "--parent", "sub") == 0
    assert (
        _privca(
            data,
            "ca",
            "create-sub",
            "corp",
            "--parent",
            "root",
            "--allow-dns-suffix",
            "corp.example",
        )
        == 0
    )
    return data


def _cert_rows(data: Path, capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert _privca(data, "cert", "list", "--limit", "100000") == 0
    return len(capsys.readouterr().out.splitlines()) - 1


@pytest.mark.parametrize("cell", list(CLI_CELLS), ids=[f"cli/{c}" for c in CLI_CELLS])
def test_cli_refuses(
    cli_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str
) -> None:
    ca, extra, first, fragment = CLI_CELLS[cell]
    data = tmp_path / "data"
    shutil.copytree(cli_template, data)
    if first is not None:
        assert _privca(data, *first) == 0
    before = _cert_rows(data, capsys)
    assert _privca(data, "cert", "issue", "--ca", ca, *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert fragment in err
    assert _cert_rows(data, capsys) == before


def test_cli_control_issues(
    cli_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(cli_template, data)
    before = _cert_rows(data, capsys)
    assert _privca(data, "cert", "issue", "--ca", "corp", "--san", "dns:www.corp.example") == 0
    assert _privca(data, "cert", "issue", "--ca", "under", "--san", "dns:x.internal") == 0
    assert _cert_rows(data, capsys) == before + 2
