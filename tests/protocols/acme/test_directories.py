"""Named ACME directories through the aiohttp app: own URLs, CA, identifier policy, accounts."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509

from protocols.acme import routes
from server.ca import api, keys
from server.ca.acme import api as acme_api
from server.ca.types import AuditEvent, CAStatus, CertQuery
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.protocols.acme.conftest import OP, AiohttpClient
from tests.protocols.acme.support import AcmeClient, FakeNetwork, b64u, csr_der, eab_binding, jwk_of
from tests.support import TEST_SEALER, openssl_verify

SETTINGS = acme_api.AcmeSettings(
    validation=acme_api.ValidationSettings(attempts=1, retry_delay=0.0, timeout=2.0)
)
CORP = acme_api.AcmeDirectory(
    name="corp", ca="corp", dns_suffixes=("corp.example",), wildcard=False
)
EAB = acme_api.AcmeDirectory(name="locked", ca="corp", eab_required=True)


class Ticker:
    """A monotonic clock the test moves (the engine caches CA state for 2 s)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class DirsEnv:
    http: TestClient[Any, Any]
    default: acme_api.AcmeService
    dirs: acme_api.Directories
    engine: api.CAEngine
    network: FakeNetwork
    db: Database
    ticker: Ticker

    def client(self, prefix: str = "/acme/corp", key: Any = None) -> AcmeClient:
        return AcmeClient(self.http, key, prefix=prefix)

    async def idle(self) -> None:
        await self.default.orders.wait_idle()
        for name in ("corp", "locked"):
            await (await self.dirs.service(name)).orders.wait_idle()


@pytest.fixture
async def env(
    database: Database, key_backend: keys.Pkcs8KeyBackend, aiohttp_client: AiohttpClient
) -> AsyncIterator[DirsEnv]:
    ticker = Ticker()
    engine = api.CAEngine(
        SqlRepository(database),
        key_backend,
        settings=api.EngineSettings(default_ca="issuing"),
        monotonic=ticker,
    )
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate(
        "issuing", parent="root", actor=OP, path_length=0, dns_suffixes=(".internal",)
    )
    await engine.create_subordinate("corp", parent="root", actor=OP, path_length=0)
    network = FakeNetwork()
    repo = SqlAcmeRepository(database, TEST_SEALER)
    default = acme_api.AcmeService(engine, repo, ports=network.ports(), settings=SETTINGS)
    dirs = acme_api.Directories(
        engine,
        repo,
        ports=network.ports(),
        settings=SETTINGS,
        config={"corp": CORP, "locked": EAB},
    )
    root = web.Application()
    root.add_subapp("/acme", routes.build_app(default, directories=dirs))
    http = await aiohttp_client(root)
    e = DirsEnv(http, default, dirs, engine, network, database, ticker)
    yield e
    await e.idle()


async def _authorize(env: DirsEnv, client: AcmeClient, order: dict[str, Any]) -> None:
    for url in order["authorizations"]:
        authz = (await client.get(url)).json()
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        env.network.http_answers[chall["token"]] = client.key_authorization(chall["token"])
        assert (await client.post(chall["url"], {})).status == 200
    await env.idle()


async def _ready(env: DirsEnv, client: AcmeClient, *names: str) -> dict[str, Any]:
    reply = await client.new_order(*names)
    assert reply.status == 201, reply.body
    order: dict[str, Any] = reply.json()
    await _authorize(env, client, order)
    return order


async def _issue(
    env: DirsEnv, client: AcmeClient, *names: str
) -> tuple[str, list[x509.Certificate]]:
    order = await _ready(env, client, *names)
    der, _ = csr_der(list(names))
    done = await client.post(order["finalize"], {"csr": b64u(der)})
    assert done.status == 200, done.body
    cert_url = done.json()["certificate"]
    pem = (await client.post(cert_url + "/1", None)).body
    return cert_url, x509.load_pem_x509_certificates(pem)


async def _account(env: DirsEnv, prefix: str, key: Any = None) -> AcmeClient:
    client = env.client(prefix, key)
    reply = await client.new_account()
    assert reply.status == 201, reply.body
    return client


async def test_default_directory_unchanged(env: DirsEnv) -> None:
    client = await _account(env, "/acme")
    assert client.dir["newOrder"] == client.url("/acme/new-order")
    assert client.dir["meta"]["externalAccountRequired"] is False
    assert client.kid is not None
    assert client.kid.startswith(client.url("/acme/acct/"))
    _, chain = await _issue(env, client, "www.a.internal")
    issuing = await env.engine.get_ca("issuing")
    assert chain[1].subject == issuing.certificate.subject


async def test_named_directory_urls_live_under_its_prefix(env: DirsEnv) -> None:
    client = env.client()
    directory = await client.directory()
    base = client.url("/acme/corp/")
    for key in ("newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange"):
        assert directory[key].startswith(base), key
    assert directory["renewalInfo"] == base + "renewal-info"
    reply = await client.new_account()
    assert reply.status == 201
    assert reply.headers["Location"].startswith(base + "acct/")
    assert f'<{base}directory>;rel="index"' in reply.links
    order = await _ready(env, client, "www.corp.example")
    assert order["finalize"].startswith(base + "order/")
    authz = (await client.get(order["authorizations"][0])).json()
    assert authz["challenges"][0]["url"].startswith(base + "chall/")
    own = await env.http.get("/acme/corp/directory")
    assert "Link" not in own.headers  # the index is not linked from itself
    nonce = await env.http.head("/acme/corp/new-nonce")
    assert nonce.status == 200
    assert nonce.headers["Replay-Nonce"]


async def test_allowed_name_is_issued_by_the_directory_ca(env: DirsEnv) -> None:
    client = await _account(env, "/acme/corp")
    cert_url, chain = await _issue(env, client, "www.corp.example")
    assert cert_url.startswith(client.url("/acme/corp/cert/"))
    corp = await env.engine.get_ca("corp")
    leaf = chain[0]
    assert leaf.issuer == corp.certificate.subject
    assert chain[1] == corp.certificate
    assert openssl_verify(leaf, chain[1:]).returncode == 0


@pytest.mark.parametrize(
    ("name", "rule"),
    [("www.other.example", "grant.dns-suffix"), ("*.corp.example", "grant.wildcard")],
    ids=["fail/outside-suffix", "fail/wildcard"],
)
async def test_directory_policy_refuses_names_naming_the_rule(
    env: DirsEnv, name: str, rule: str
) -> None:
    client = await _account(env, "/acme/corp")
    reply = await client.new_order(name)
    assert reply.status == 400
    assert reply.problem_type == "rejectedIdentifier"
    assert rule in reply.json()["detail"]
    # The default directory (any name its challenges prove, under its CA's policy) is
    # not affected by another directory's policy.
    other = await _account(env, "/acme")
    assert (await other.new_order("www.b.internal")).status == 201


async def test_account_of_another_directory_does_not_exist(env: DirsEnv) -> None:
    default = await _account(env, "/acme")
    assert default.kid is not None
    account_id = default.kid.rsplit("/", 1)[1]
    corp = env.client()
    await corp.directory()
    corp.key, corp.kid = default.key, corp.url(f"/acme/corp/acct/{account_id}")
    reply = await corp.new_order("www.corp.example")
    assert reply.status == 400
    assert reply.problem_type == "accountDoesNotExist"
    # The other directory's own kid URL is not an account URL here either.
    corp.kid = default.kid
    assert (await corp.new_order("www.corp.example")).problem_type == "accountDoesNotExist"


async def test_orders_and_certificates_stay_in_their_directory(env: DirsEnv) -> None:
    default = await _account(env, "/acme")
    cert_url, _ = await _issue(env, default, "www.c.internal")
    order_url = (await default.new_order("www.d.internal")).headers["Location"]
    corp = await _account(env, "/acme/corp")
    for url in (order_url, cert_url):
        moved = url.replace("/acme/", "/acme/corp/")
        reply = await corp.get(moved)
        assert reply.status == 403, (url, reply.body)
        assert reply.problem_type == "unauthorized"


async def test_a_key_of_another_directory_cannot_make_an_account(env: DirsEnv) -> None:
    corp = await _account(env, "/acme/corp")
    again = env.client("/acme/locked", corp.key)
    reply = await again.new_account()
    assert reply.status == 403
    assert reply.problem_type == "unauthorized"
    assert "another ACME directory" in reply.json()["detail"]


async def test_eab_required_on_one_directory_is_not_bypassed(env: DirsEnv) -> None:
    locked = env.client("/acme/locked")
    assert (await locked.directory())["meta"]["externalAccountRequired"] is True
    reply = await locked.new_account()
    assert reply.status == 400, reply.body
    assert reply.problem_type == "externalAccountRequired"
    # Made without EAB on a directory that does not require it ...
    corp = await _account(env, "/acme/corp")
    # ... the account is no account on the EAB directory, by kid ...
    assert corp.kid is not None
    sneaky = env.client("/acme/locked", corp.key)
    await sneaky.directory()
    sneaky.kid = corp.kid.replace("/acme/corp/", "/acme/locked/")
    reply = await sneaky.new_order("www.corp.example")
    assert reply.problem_type == "accountDoesNotExist"
    # ... nor by its key.
    sneaky.kid = None
    reply = await sneaky.new_account()
    assert reply.status == 403
    assert reply.problem_type == "unauthorized"
    # With a binding a fresh key gets in.
    key = await (await env.dirs.service("locked")).accounts.create_eab_key(actor=OP)
    ok = env.client("/acme/locked")
    await ok.directory()
    binding = eab_binding(key.kid, key.hmac_key, jwk_of(ok.key), ok.dir["newAccount"])
    assert (await ok.new_account(externalAccountBinding=binding)).status == 201


async def test_unknown_directory_is_a_problem_document(env: DirsEnv) -> None:
    resp = await env.http.get("/acme/nope/directory")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert "no ACME directory 'nope'" in (await resp.json())["detail"]


async def _set_status(env: DirsEnv, name: str, status: CAStatus) -> None:
    repo = SqlRepository(env.db)
    ca = await env.engine.get_ca(name)
    event = AuditEvent(at=ca.created_at, actor="test", action="ca.state", target=name)
    assert await repo.update_ca(
        replace(ca, status=status), expected_version=ca.version, audit=event
    )
    env.ticker.now += 10  # past the engine's CA state cache


async def test_directory_of_a_disabled_ca_answers_a_problem_not_500(env: DirsEnv) -> None:
    client = await _account(env, "/acme/corp")
    order = await _ready(env, client, "www.corp.example")
    await _set_status(env, "corp", CAStatus.DISABLED)
    der, _ = csr_der(["www.corp.example"])
    done = await client.post(order["finalize"], {"csr": b64u(der)})
    assert done.status == 403, done.body
    assert done.headers["Content-Type"].startswith("application/problem+json")
    assert "ca.state" in done.json()["detail"]
    reply = await client.new_order("api.corp.example")
    assert reply.status == 403
    assert "ca.state" in reply.json()["detail"]


async def test_finalize_applies_the_directory_policy_of_the_moment(env: DirsEnv) -> None:
    """An order authorized under a wider policy is not issued after the policy narrows."""
    team = acme_api.AcmeDirectory(name="team", ca="corp", dns_suffixes=("team.example",))
    await env.dirs.add(team, actor=OP)
    client = await _account(env, "/acme/team")
    order = await _ready(env, client, "www.team.example")
    await (await env.dirs.service("team")).orders.wait_idle()
    await env.dirs.remove("team", actor=OP)
    await env.dirs.add(replace(team, dns_suffixes=("elsewhere.example",)), actor=OP)
    before = await SqlRepository(env.db).list_certificates(CertQuery(limit=1000))
    der, _ = csr_der(["www.team.example"])
    done = await client.post(order["finalize"], {"csr": b64u(der)})
    assert done.status == 400, done.body
    assert done.problem_type == "rejectedIdentifier"
    assert "grant.dns-suffix" in done.json()["detail"]
    assert await SqlRepository(env.db).list_certificates(CertQuery(limit=1000)) == before


async def test_directory_ip_ranges_refuse_other_addresses(env: DirsEnv) -> None:
    lab = acme_api.AcmeDirectory(
        name="lab", ca="corp", ip_ranges=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    await env.dirs.add(lab, actor=OP)
    client = await _account(env, "/acme/lab")
    reply = await client.new_order("192.0.2.7")
    assert reply.status == 400, reply.body
    assert reply.problem_type == "rejectedIdentifier"
    assert "grant.ip-range: 192.0.2.7 is outside 10.0.0.0/8" in reply.json()["detail"]
    assert (await client.new_order("10.1.2.3")).status == 201
    await (await env.dirs.service("lab")).orders.wait_idle()
