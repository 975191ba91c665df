"""Manual approval (RFC 7030 §4.2.3): 202 + Retry-After until an operator decides."""

from __future__ import annotations

from datetime import timedelta

from server.ca.est import api as est_api
from server.store.database import Database
from server.store.est_repository import SqlEstRepository
from tests.protocols.est.conftest import (
    OP,
    PASSWORD,
    PKCS10,
    PREFIX,
    EstEnv,
    b64,
    basic,
    certs_from_body,
    csr_der,
)


async def _setup(env: EstEnv) -> None:
    await env.service.add_label(est_api.EstLabel(name="manual", approval_required=True), actor=OP)
    await env.service.add_user("manual", "dev1", PASSWORD, actor=OP)


async def test_enroll_waits_for_approval_then_issues_once(est_env: EstEnv) -> None:
    await _setup(est_env)
    der, key = csr_der("door-lock-7")
    url = f"{PREFIX}/manual/simpleenroll"
    headers = {**PKCS10, **basic()}
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 202
    assert resp.headers["Retry-After"] == "42"
    assert await est_env.cert_count() == 2
    # A retry before the decision is still 202 and does not queue a second request.
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 202
    (pending,) = await est_env.service.list_pending()
    assert "door-lock-7" in pending.subject
    await est_env.service.decide(pending.id, approve=True, actor=OP)
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 200
    (cert,) = certs_from_body(await resp.read())
    assert cert.public_key() == key.public_key()
    assert await est_env.cert_count() == 3
    # A lost response: the retry gets the same certificate, nothing new is issued.
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 200
    (again,) = certs_from_body(await resp.read())
    assert again.serial_number == cert.serial_number
    assert await est_env.cert_count() == 3


async def test_rejected_enrollment_is_403(est_env: EstEnv) -> None:
    await _setup(est_env)
    der, _ = csr_der("intruder")
    url = f"{PREFIX}/manual/simpleenroll"
    headers = {**PKCS10, **basic()}
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    await est_env.service.decide(pending.id, approve=False, actor=OP)
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 403
    assert "rejected" in await resp.text()
    assert await est_env.cert_count() == 2


async def test_bad_requests_are_not_queued(est_env: EstEnv) -> None:
    await _setup(est_env)
    url = f"{PREFIX}/manual/simpleenroll"
    der, _ = csr_der()
    # Wrong password, bad signature, disallowed key: refused before anything is stored.
    resp = await est_env.client.post(
        url, data=b64(der), headers={**PKCS10, **basic(password="nope-nope")}
    )
    assert resp.status == 401
    resp = await est_env.client.post(
        url, data=b64(der[:-1] + bytes([der[-1] ^ 1])), headers={**PKCS10, **basic()}
    )
    assert resp.status == 400
    assert await est_env.pending_count() == 0


async def test_serverkeygen_with_approval(est_env: EstEnv) -> None:
    await _setup(est_env)
    der, _ = csr_der("keyless-device")
    url = f"{PREFIX}/manual/serverkeygen"
    headers = {**PKCS10, **basic()}
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    assert pending.operation is est_api.EstOperation.SERVERKEYGEN
    await est_env.service.decide(pending.id, approve=True, actor=OP)
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("multipart/mixed")


async def test_issued_then_revoked_key_starts_a_new_request(est_env: EstEnv) -> None:
    await _setup(est_env)
    der, _ = csr_der("door-lock-8")
    url = f"{PREFIX}/manual/simpleenroll"
    headers = {**PKCS10, **basic()}
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    await est_env.service.decide(pending.id, approve=True, actor=OP)
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    (cert,) = certs_from_body(await resp.read())
    await est_env.engine.revoke(cert.serial_number, principal=OP, ca="issuing")
    # The old certificate is not handed out again: the request waits for a new decision.
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 202
    assert len(await est_env.service.list_pending()) == 1


async def test_stale_issuing_claim_is_recovered(est_env: EstEnv, database: Database) -> None:
    await _setup(est_env)
    der, _ = csr_der("door-lock-9")
    url = f"{PREFIX}/manual/simpleenroll"
    headers = {**PKCS10, **basic()}
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    await est_env.service.decide(pending.id, approve=True, actor=OP)
    # A process claimed the approval and died before storing the result.
    repo = SqlEstRepository(database)
    assert await repo.transition_pending(
        pending.id,
        from_status=est_api.PendingStatus.APPROVED,
        to_status=est_api.PendingStatus.ISSUING,
        at=est_env.clock.now(),
    )
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 202
    assert resp.headers["Retry-After"] == "5"
    est_env.clock.advance(timedelta(minutes=11))
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 200
    assert await est_env.cert_count() == 3
