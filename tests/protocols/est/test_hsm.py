"""EST enrollment from a CA whose key is in a PKCS#11 token (SoftHSM2): a missing token answers
503 with Retry-After, never 500, and enrollment resumes when the token is back."""

from __future__ import annotations

from datetime import UTC, datetime

from server.ca import api, hsm, keys
from server.ca.est import api as est_api
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from server.store.repository import SqlRepository
from tests.protocols.est.conftest import (
    OP,
    PASSWORD,
    PKCS10,
    PREFIX,
    ClientFactory,
    b64,
    basic,
    certs_from_body,
    csr_der,
    label_app,
)
from tests.support import FakeClock, SoftHsm, openssl_verify


async def test_enroll_from_token_ca_and_token_outage(
    sql_repo: SqlRepository,
    database: Database,
    key_backend: keys.Pkcs8KeyBackend,
    softhsm: SoftHsm,
    aiohttp_client: ClientFactory,
) -> None:
    token = hsm.Pkcs11KeyBackend(
        hsm.SessionPool(
            hsm.TokenSettings(module=softhsm.module, token_label=softhsm.label, retry_seconds=0),
            lambda: softhsm.pin,
        )
    )
    engine = api.CAEngine(
        sql_repo,
        keys.KeyBackends(key_backend, token),
        settings=api.EngineSettings(default_ca="issuing"),
    )
    await engine.create_root("root", actor=OP, key_backend="pkcs11")
    await engine.create_subordinate("issuing", parent="root", actor=OP, key_backend="pkcs11")
    service = est_api.EstService(
        engine, SqlEstRepository(database), clock=FakeClock(datetime.now(UTC)), retry_after=42
    )
    await service.add_user("default", "dev1", PASSWORD, actor=OP)
    client = await aiohttp_client(label_app(service))
    chain = await engine.chain_of(await engine.get_ca("issuing"))

    async def enroll() -> tuple[int, dict[str, str], bytes]:
        der, _ = csr_der("fire-sensor-123")
        resp = await client.post(
            f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
        )
        return resp.status, dict(resp.headers), await resp.read()

    status, _, body = await enroll()
    assert status == 200, body
    (cert,) = certs_from_body(body)
    assert openssl_verify(cert, chain).returncode == 0

    (token_dir,) = softhsm.tokens.iterdir()
    away = softhsm.tokens.parent / "away-est"
    token_dir.rename(away)
    try:
        status, headers, body = await enroll()
    finally:
        away.rename(token_dir)
    assert status == 503, body
    assert headers["Retry-After"] == "10"
    assert softhsm.label.encode() in body
    status, _, body = await enroll()
    assert status == 200, body
    token.close()
