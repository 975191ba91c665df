"""Every ACME state change leaves exactly one audit record: who, what, target, from where."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

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
    await trail.new()  # validation is not audited (no operator or client decision)
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
