"""Every ACME state change leaves exactly one audit record: who, what, target, from where."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.acme import api as acme_api
from server.ca.acme import types as at
from server.ca.types import Principal
from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient, b64u, csr_der, jws
from tests.protocols.acme.test_accounts import key_change_body
from tests.protocols.acme.test_flow import authorize
from tests.protocols.acme.test_revocation_and_renewal import der
from tests.support import AuditTrail

# aiohttp's test client connects from the loopback address.
CLIENT = "127.0.0.1"


async def test_each_acme_path_writes_one_record(acme_env: AcmeEnv) -> None:
    trail = AuditTrail(acme_env.engine)
    await trail.new()  # the CA hierarchy made by the fixture
    acme = acme_env.client()
    assert (await acme.new_account(contact=["mailto:a@example.internal"])).status == 201
    assert acme.kid is not None
    account = acme.kid.rsplit("/", 1)[1]
    who = f"acme:{account}"
    assert await trail.new() == [(who, "acme.account-create", account, CLIENT)]

    assert (await acme.post(acme.kid, {"contact": ["mailto:b@example.internal"]})).status == 200
    assert await trail.new() == [(who, "acme.account-update", account, CLIENT)]
    # A POST-as-GET and an update that changes nothing are not state changes.
    assert (await acme.get(acme.kid)).status == 200
    assert (await acme.post(acme.kid, {"contact": ["mailto:b@example.internal"]})).status == 200
    assert await trail.new() == []

    reply = await acme.new_order("trail.internal")
    assert reply.status == 201, reply.body
    order = reply.json()
    order_id = reply.headers["Location"].rsplit("/", 1)[1]
    assert await trail.new() == [(who, "acme.order-create", order_id, CLIENT)]

    await authorize(acme_env, acme, order)
    (authz_id,) = [url.rsplit("/", 1)[1] for url in order["authorizations"]]
    assert await trail.new() == [(who, "acme.authz-validate", authz_id, CLIENT)]
    assert trail.details == [
        {"identifier": "dns:trail.internal", "challenge": "http-01", "result": "valid"}
    ]
    csr, _ = csr_der(["trail.internal"])
    done = await acme.post(order["finalize"], {"csr": b64u(csr)})
    assert done.status == 200, done.body
    cert = x509.load_pem_x509_certificates((await acme.get(done.json()["certificate"])).body)[0]
    serial = format(cert.serial_number, "X")
    assert await trail.new() == [(who, "cert.issue", f"issuing/{serial}", CLIENT)]

    revoked = await acme.post(acme.dir["revokeCert"], {"certificate": der(cert), "reason": 4})
    assert revoked.status == 200, revoked.body
    assert await trail.new() == [(who, "cert.revoke", serial, CLIENT)]

    url = acme.dir["keyChange"]
    new_key = ec.generate_private_key(ec.SECP256R1())
    assert (await acme.post(url, key_change_body(acme, new_key, url))).status == 200
    acme.key = new_key
    assert await trail.new() == [(who, "acme.key-change", account, CLIENT)]

    assert (await acme.post(acme.kid, {"status": "deactivated"})).status == 200
    assert await trail.new() == [(who, "acme.account-deactivate", account, CLIENT)]

    result = await acme_env.engine.verify_audit()
    assert result.broken is None


async def test_revocation_by_certificate_key_is_recorded(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    reply = await acme.new_order("keyrev.internal")
    await authorize(acme_env, acme, reply.json())
    csr, cert_key = csr_der(["keyrev.internal"])
    done = await acme.post(reply.json()["finalize"], {"csr": b64u(csr)})
    cert = x509.load_pem_x509_certificates((await acme.get(done.json()["certificate"])).body)[0]
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    url = acme.dir["revokeCert"]
    body = jws(cert_key, {"certificate": der(cert)}, url=url, nonce=await acme.new_nonce())
    assert (await acme.send(url, body)).status == 200
    serial = format(cert.serial_number, "X")
    assert await trail.new() == [("acme:certificate-key", "cert.revoke", serial, CLIENT)]


async def test_authorization_changes_are_recorded(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    assert acme.kid is not None
    who = f"acme:{acme.kid.rsplit('/', 1)[1]}"
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    ident = {"type": "dns", "value": "pre.internal"}
    created = await acme.post(acme.dir["newAuthz"], {"identifier": ident})
    assert created.status == 201, created.body
    url = created.headers["Location"]
    authz_id = url.rsplit("/", 1)[1]
    assert await trail.new() == [(who, "acme.authz-create", authz_id, CLIENT)]
    assert trail.details == [{"identifier": "dns:pre.internal"}]

    assert (await acme.get(url)).status == 200
    assert await trail.new() == []
    assert (await acme.post(url, {"status": "deactivated"})).status == 200
    assert await trail.new() == [(who, "acme.authz-deactivate", authz_id, CLIENT)]
    # Deactivating twice is refused and changes nothing.
    assert (await acme.post(url, {"status": "deactivated"})).status == 400
    assert await trail.new() == []
    assert (await acme_env.engine.verify_audit()).broken is None


KINDS = ["http-01", "dns-01", "tls-alpn-01"]


@pytest.mark.parametrize("kind", KINDS, ids=[f"ok/{k}" for k in KINDS])
async def test_validation_success_is_recorded(
    acme_env: AcmeEnv, acme: AcmeClient, kind: str
) -> None:
    assert acme.kid is not None
    who = f"acme:{acme.kid.rsplit('/', 1)[1]}"
    order = (await acme.new_order("ok.internal")).json()
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    await authorize(acme_env, acme, order, kind)
    authz_id = order["authorizations"][0].rsplit("/", 1)[1]
    assert await trail.new() == [(who, "acme.authz-validate", authz_id, CLIENT)]
    assert trail.details == [
        {"identifier": "dns:ok.internal", "challenge": kind, "result": "valid"}
    ]


@pytest.mark.parametrize("kind", KINDS, ids=[f"fail/{k}" for k in KINDS])
async def test_validation_failure_is_recorded_without_the_network_error(
    acme_env: AcmeEnv, acme: AcmeClient, kind: str
) -> None:
    assert acme.kid is not None
    who = f"acme:{acme.kid.rsplit('/', 1)[1]}"
    order = (await acme.new_order("bad.internal")).json()
    url = order["authorizations"][0]
    authz_id = url.rsplit("/", 1)[1]
    chall = next(c for c in (await acme.get(url)).json()["challenges"] if c["type"] == kind)
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    acme_env.network.fail_with = acme_api.NetworkError("connection", "refused by 10.9.9.9:80")
    assert (await acme.post(chall["url"], {})).status == 200
    await acme_env.registration.orders.wait_idle()
    assert await trail.new() == [(who, "acme.authz-validate", authz_id, CLIENT)]
    error = "dns" if kind == "dns-01" else "connection"
    assert trail.details == [
        {"identifier": "dns:bad.internal", "challenge": kind, "result": "invalid", "error": error}
    ]
    # Responding again to a finished challenge validates nothing and records nothing.
    assert (await acme.post(chall["url"], {})).status == 200
    await acme_env.registration.orders.wait_idle()
    assert await trail.new() == []


async def test_an_order_made_invalid_by_a_refused_issuance_is_recorded(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    assert acme.kid is not None
    who = f"acme:{acme.kid.rsplit('/', 1)[1]}"
    reply = await acme.new_order("refused.internal")
    order = reply.json()
    order_id = reply.headers["Location"].rsplit("/", 1)[1]
    await authorize(acme_env, acme, order)
    # The order is ready; then the CA stops issuing, so finalize makes the order invalid.
    await acme_env.engine.disable_ca("issuing", actor=Principal("operator", "test"))
    trail = AuditTrail(acme_env.engine)
    await trail.new()
    csr, _ = csr_der(["refused.internal"])
    done = await acme.post(order["finalize"], {"csr": b64u(csr)})
    assert done.status == 403, done.body
    assert await trail.new() == [(who, "acme.order-invalid", order_id, CLIENT)]
    assert trail.details == [{"error": "policy"}]
    stored = await acme_env.repo.get_order(at.OrderId(order_id))
    assert stored is not None
    assert stored.status is at.OrderStatus.INVALID
    # A CSR refusal leaves the order as it was (ready again): no record.
    await acme_env.engine.enable_ca("issuing", actor=Principal("operator", "test"))
    order = (await acme.new_order("csr.internal")).json()
    await authorize(acme_env, acme, order)
    await trail.new()
    bad, _ = csr_der(["other.internal"])
    assert (await acme.post(order["finalize"], {"csr": b64u(bad)})).status == 400
    assert await trail.new() == []
    assert (await acme_env.engine.verify_audit()).broken is None
