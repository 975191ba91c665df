"""Two privca nodes on one database: a nonce from one is good once on the other, never twice."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from protocols.acme import routes
from server.ca import api, keys
from server.ca.acme import api as acme_api
from server.store.acme_repository import SqlAcmeRepository
from server.store.database import Database
from server.store.repository import SqlRepository
from tests.protocols.acme.conftest import AiohttpClient, make_engine
from tests.protocols.acme.support import AcmeClient, FakeNetwork, jws
from tests.support import TEST_SEALER


async def node(
    db: Database, key_backend: keys.Pkcs8KeyBackend, aiohttp_client: AiohttpClient
) -> Any:
    engine = api.CAEngine(
        SqlRepository(db), key_backend, settings=api.EngineSettings(default_ca="issuing")
    )
    repo = SqlAcmeRepository(db, TEST_SEALER)
    reg = acme_api.AcmeService(engine, repo, ports=FakeNetwork().ports())
    app = web.Application()
    app.add_subapp("/acme", routes.build_app(reg))
    return await aiohttp_client(app)


async def test_nonce_from_one_node_is_single_use_on_every_node(
    database: Database, key_backend: keys.Pkcs8KeyBackend, aiohttp_client: AiohttpClient
) -> None:
    await make_engine(database, key_backend)
    # A second node: its own engine, connection pool and in-process caches.
    other_db = Database(database.url)
    try:
        http_a = await node(database, key_backend, aiohttp_client)
        http_b = await node(other_db, key_backend, aiohttp_client)
        a, b = AcmeClient(http_a), AcmeClient(http_b)
        await a.directory()
        await b.directory()
        assert (await a.new_account()).status == 201

        nonce = await a.new_nonce()
        url_b = b.dir["newAccount"]
        body_b = jws(a.key, {"onlyReturnExisting": True}, url=url_b, nonce=nonce)
        accepted = await b.send(url_b, body_b)
        assert accepted.status == 200, accepted.body

        for client in (b, a):
            url = client.dir["newAccount"]
            again = await client.send(
                url, jws(a.key, {"onlyReturnExisting": True}, url=url, nonce=nonce)
            )
            assert again.status == 400
            assert again.problem_type == "badNonce"
            # badNonce carries a fresh nonce the client can retry with.
            fresh = again.headers["Replay-Nonce"]
            retry = await client.send(
                url, jws(a.key, {"onlyReturnExisting": True}, url=url, nonce=fresh)
            )
            assert retry.status == 200
    finally:
        await other_db.close()
