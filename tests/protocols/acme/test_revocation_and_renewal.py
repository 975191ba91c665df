"""revokeCert (RFC 8555 §7.6), ARI (RFC 9773), authz deactivation, newAuthz, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CertStatus, RevocationReason
from server.config import AcmeConfig
from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient, b64u, jws
from tests.protocols.acme.test_flow import authorize, obtain


def der(cert: x509.Certificate) -> str:
    return b64u(cert.public_bytes(serialization.Encoding.DER))


async def status_of(env: AcmeEnv, cert: x509.Certificate) -> CertStatus:
    rec = await env.engine.get_certificate(None, cert.serial_number)
    return rec.status


async def test_revoke_by_account_with_reason(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    _, certs = await obtain(acme_env, acme, "rev.internal")
    reply = await acme.post(acme.dir["revokeCert"], {"certificate": der(certs[0]), "reason": 4})
    assert reply.status == 200, reply.body
    rec = await acme_env.engine.get_certificate(None, certs[0].serial_number)
    assert rec.status is CertStatus.REVOKED
    assert rec.revocation_reason is RevocationReason.SUPERSEDED
    again = await acme.post(acme.dir["revokeCert"], {"certificate": der(certs[0])})
    assert again.status == 400
    assert again.problem_type == "alreadyRevoked"


async def test_revoke_by_certificate_key(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    reply = await acme.new_order("keyrev.internal")
    await authorize(acme_env, acme, reply.json())
    from tests.protocols.acme.support import csr_der

    csr, cert_key = csr_der(["keyrev.internal"])
    done = await acme.post(reply.json()["finalize"], {"csr": b64u(csr)})
    cert = x509.load_pem_x509_certificates((await acme.get(done.json()["certificate"])).body)[0]
    nonce = await acme.new_nonce()
    url = acme.dir["revokeCert"]
    body = jws(cert_key, {"certificate": der(cert), "reason": 1}, url=url, nonce=nonce)
    result = await acme.send(url, body)
    assert result.status == 200, result.body
    assert await status_of(acme_env, cert) is CertStatus.REVOKED


@pytest.mark.parametrize("who", ["fail/other-account", "fail/other-key"])
async def test_revoke_by_stranger_is_unauthorized(
    acme_env: AcmeEnv, acme: AcmeClient, who: str
) -> None:
    _, certs = await obtain(acme_env, acme, "victim.internal")
    url = acme.dir["revokeCert"]
    if who == "fail/other-account":
        other = acme_env.client()
        await other.new_account()
        reply = await other.post(url, {"certificate": der(certs[0])})
    else:
        stranger = ec.generate_private_key(ec.SECP256R1())
        nonce = await acme.new_nonce()
        reply = await acme.send(
            url, jws(stranger, {"certificate": der(certs[0])}, url=url, nonce=nonce)
        )
    assert reply.status == 403
    assert reply.problem_type == "unauthorized"
    assert await status_of(acme_env, certs[0]) is CertStatus.VALID


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param({"reason": 7}, "badRevocationReason", id="fail/reason-7"),
        pytest.param({"reason": 8}, "badRevocationReason", id="fail/remove-from-crl"),
        pytest.param({"reason": "one"}, "malformed", id="fail/reason-string"),
        pytest.param({"certificate": "AAAA"}, "malformed", id="fail/not-a-certificate"),
    ],
)
async def test_bad_revocation_requests(
    acme_env: AcmeEnv, acme: AcmeClient, payload: dict[str, object], problem: str
) -> None:
    _, certs = await obtain(acme_env, acme, "badrev.internal")
    body = {"certificate": der(certs[0]), **payload}
    reply = await acme.post(acme.dir["revokeCert"], body)
    assert reply.status == 400
    assert reply.problem_type == problem
    assert await status_of(acme_env, certs[0]) is CertStatus.VALID


async def test_renewal_info_and_replaces(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    _, certs = await obtain(acme_env, acme, "ari.internal")
    leaf = certs[0]
    cert_id = acme_api.cert_id_of(leaf)
    resp = await acme_env.http.get(f"/acme/renewal-info/{cert_id}")
    assert resp.status == 200
    assert int(resp.headers["Retry-After"]) > 0
    window = (await resp.json())["suggestedWindow"]
    start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(window["end"].replace("Z", "+00:00"))
    assert leaf.not_valid_before_utc < start < end < leaf.not_valid_after_utc
    reply = await acme.new_order("ari.internal", replaces=cert_id)
    assert reply.status == 201
    assert reply.json()["replaces"] == cert_id
    # RFC 9773 §5: a second live replacement of the same certificate is refused.
    again = await acme.new_order("ari.internal", replaces=cert_id)
    assert again.status == 409, again.body
    assert again.json()["type"] == "urn:ietf:params:acme:error:alreadyReplaced"
    # Revoked: the window moves to now.
    await acme.post(acme.dir["revokeCert"], {"certificate": der(leaf)})
    window = (await (await acme_env.http.get(f"/acme/renewal-info/{cert_id}")).json())[
        "suggestedWindow"
    ]
    assert datetime.fromisoformat(window["end"].replace("Z", "+00:00")) <= datetime.now(UTC)


async def test_racing_replacements_of_one_certificate(
    acme_env: AcmeEnv, acme: AcmeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 13: two newOrders naming the same ``replaces`` both passed the check.
    _, certs = await obtain(acme_env, acme, "race.internal")
    cert_id = acme_api.cert_id_of(certs[0])
    both_looked = asyncio.Barrier(2)
    look = acme_env.repo.orders_replacing

    async def look_together(cert: str) -> Sequence[acme_api.Order]:
        found = await look(cert)
        await both_looked.wait()  # each saw no live replacement before either wrote
        return found

    monkeypatch.setattr(acme_env.repo, "orders_replacing", look_together)
    replies = await asyncio.gather(
        *(acme.new_order("race.internal", replaces=cert_id) for _ in range(2))
    )
    assert sorted(r.status for r in replies) == [201, 409]
    (lost,) = [r for r in replies if r.status == 409]
    assert lost.problem_type == "alreadyReplaced"
    monkeypatch.undo()
    # Once the winner is dead (its authorization deactivated) the slot is free again.
    (won,) = [r for r in replies if r.status == 201]
    await acme.post(won.json()["authorizations"][0], {"status": "deactivated"})
    assert (await acme.get(won.headers["Location"])).json()["status"] == "invalid"
    again = await acme.new_order("race.internal", replaces=cert_id)
    assert again.status == 201, again.body
    third = await acme.new_order("race.internal", replaces=cert_id)
    assert third.problem_type == "alreadyReplaced"


@pytest.mark.parametrize(
    ("cert_id", "status", "problem"),
    [
        pytest.param("nodot", 400, "malformed", id="fail/no-dot"),
        pytest.param("AAAA.AAAA", 404, "malformed", id="fail/unknown"),
        pytest.param("a+b.c", 400, "malformed", id="fail/bad-base64"),
    ],
)
async def test_bad_renewal_info_requests(
    acme_env: AcmeEnv, cert_id: str, status: int, problem: str
) -> None:
    resp = await acme_env.http.get(f"/acme/renewal-info/{cert_id}")
    assert resp.status == status
    assert (await resp.json())["type"].endswith(problem)


async def test_replaces_of_another_accounts_cert_is_unauthorized(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    _, certs = await obtain(acme_env, acme, "theirs.internal")
    other = acme_env.client()
    await other.new_account()
    reply = await other.new_order("theirs.internal", replaces=acme_api.cert_id_of(certs[0]))
    assert reply.status == 403
    assert reply.problem_type == "unauthorized"


async def test_authz_deactivation_invalidates_the_order(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    reply = await acme.new_order("deact.internal")
    authz_url = reply.json()["authorizations"][0]
    done = await acme.post(authz_url, {"status": "deactivated"})
    assert done.status == 200
    assert done.json()["status"] == "deactivated"
    assert (await acme.get(reply.headers["Location"])).json()["status"] == "invalid"
    again = await acme.post(authz_url, {"status": "deactivated"})
    assert again.problem_type == "malformed"
    bad = await acme.post(authz_url, {"status": "valid"})
    assert bad.problem_type == "malformed"


async def test_new_authz_pre_authorization(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    reply = await acme.post(
        acme.dir["newAuthz"], {"identifier": {"type": "dns", "value": "pre.internal"}}
    )
    assert reply.status == 201
    assert reply.json()["status"] == "pending"
    await authorize(acme_env, acme, {"authorizations": [reply.headers["Location"]]})
    order = await acme.new_order("pre.internal")
    assert order.json()["status"] == "ready"
    wild = await acme.post(
        acme.dir["newAuthz"], {"identifier": {"type": "dns", "value": "*.pre.internal"}}
    )
    assert wild.problem_type == "malformed"


class TestRateLimits:
    @pytest.fixture
    def acme_settings(self) -> acme_api.AcmeSettings:
        return acme_api.AcmeSettings(orders_per_account_per_hour=2, accounts_per_ip_per_hour=2)

    async def test_orders_per_account(self, acme_env: AcmeEnv, acme: AcmeClient) -> None:
        assert (await acme.new_order("r1.internal")).status == 201
        assert (await acme.new_order("r2.internal")).status == 201
        limited = await acme.new_order("r3.internal")
        assert limited.status == 429
        assert limited.problem_type == "rateLimited"
        assert int(limited.headers["Retry-After"]) > 0

    async def test_accounts_per_ip(self, acme_env: AcmeEnv, acme: AcmeClient) -> None:
        assert (await acme_env.client().new_account()).status == 201
        limited = await acme_env.client().new_account()
        assert limited.status == 429
        assert limited.problem_type == "rateLimited"

    async def test_limits_are_on_by_default(self) -> None:
        # Issue 13: 0 (unlimited) was the default for every limit.
        plain = acme_api.AcmeSettings()
        assert plain.orders_per_account_per_hour == 300
        assert plain.accounts_per_ip_per_hour == 50
        assert plain.pending_authzs_per_account == 1000
        assert plain.validation_queue == 1000
        assert AcmeConfig().to_engine() == plain

    async def test_order_limit_holds_across_nodes(
        self, acme_env: AcmeEnv, acme: AcmeClient
    ) -> None:
        # A second engine on the same database (another node) shares the counter.
        other = acme_api.AcmeService(
            acme_env.engine,
            acme_env.repo,
            ports=acme_env.network.ports(),
            settings=acme_api.AcmeSettings(orders_per_account_per_hour=2),
        )
        assert acme.kid is not None
        account = await other.accounts.account(acme.kid.rsplit("/", 1)[1])
        await other.orders.new_order(account, [("dns", "n1.internal")])
        assert (await acme.new_order("n2.internal")).status == 201
        limited = await acme.new_order("n3.internal")
        assert limited.problem_type == "rateLimited"
        with pytest.raises(EngineError) as err:
            await other.orders.new_order(account, [("dns", "n4.internal")])
        assert err.value.kind is ProblemKind.RATE_LIMITED


class TestPendingAuthorizations:
    @pytest.fixture
    def acme_settings(self) -> acme_api.AcmeSettings:
        return acme_api.AcmeSettings(pending_authzs_per_account=2)

    async def test_new_order_beyond_the_pending_limit_is_refused(
        self, acme_env: AcmeEnv, acme: AcmeClient
    ) -> None:
        first = await acme.new_order("p1.internal", "p2.internal")
        assert first.status == 201
        limited = await acme.new_order("p3.internal")
        assert limited.status == 429
        assert limited.problem_type == "rateLimited"
        assert int(limited.headers["Retry-After"]) > 0
        pre = await acme.post(
            acme.dir["newAuthz"], {"identifier": {"type": "dns", "value": "p4.internal"}}
        )
        assert pre.problem_type == "rateLimited"
        # Another account has its own allowance.
        other = acme_env.client()
        await other.new_account()
        assert (await other.new_order("p5.internal")).status == 201
        # Deactivating a pending authorization frees room.
        done = await acme.post(first.json()["authorizations"][0], {"status": "deactivated"})
        assert done.json()["status"] == "deactivated"
        assert (await acme.new_order("p3.internal")).status == 201


class TestValidationQueue:
    @pytest.fixture
    def acme_settings(self) -> acme_api.AcmeSettings:
        return acme_api.AcmeSettings(
            validation_queue=1,
            validation=acme_api.ValidationSettings(attempts=1, retry_delay=0.0, timeout=5.0),
        )

    async def test_a_full_queue_answers_rate_limited(
        self, acme_env: AcmeEnv, acme: AcmeClient
    ) -> None:
        gate = acme_env.network.gate = asyncio.Event()
        order = (await acme.new_order("q1.internal", "q2.internal")).json()
        challs = []
        for url in order["authorizations"]:
            authz = (await acme.get(url)).json()
            chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
            acme_env.network.http_answers[chall["token"]] = acme.key_authorization(chall["token"])
            challs.append(chall["url"])
        assert (await acme.post(challs[0], {})).json()["status"] == "processing"
        full = await acme.post(challs[1], {})
        assert full.status == 429
        assert full.problem_type == "rateLimited"
        assert int(full.headers["Retry-After"]) > 0
        # The refused challenge stays pending and can be answered once there is room.
        assert (await acme.get(challs[1])).json()["status"] == "pending"
        gate.set()
        await acme_env.registration.orders.wait_idle()
        assert (await acme.post(challs[1], {})).json()["status"] == "processing"
        await acme_env.registration.orders.wait_idle()
        assert (await acme.get(order["authorizations"][1])).json()["status"] == "valid"
