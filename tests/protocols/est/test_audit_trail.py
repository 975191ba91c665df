"""Every EST state change leaves exactly one audit record: who, what, target, from where."""

from __future__ import annotations

from server.ca.est import api as est_api
from server.ca.types import Principal
from tests.protocols.est.conftest import (
    PASSWORD,
    PKCS10,
    PREFIX,
    EstEnv,
    b64,
    basic,
    certs_from_body,
    csr_der,
    rfc9440,
)
from tests.support import AuditTrail

# The fixture's app trusts 127.0.0.1 as a proxy: the last X-Forwarded-For hop is the client.
DEVICE = "198.51.100.7"
FORWARDED = {"X-Forwarded-For": DEVICE}
ADMIN = Principal("operator", "alice", source="cli@ops-host")


async def test_each_est_path_writes_one_record(est_env: EstEnv) -> None:
    trail = AuditTrail(est_env.engine)
    await trail.new()  # the fixture's CAs and user
    await est_env.service.add_label(est_api.EstLabel(name="manual", approval_required=True),
                                    actor=ADMIN)  # fmt: skip
    assert await trail.new() == [("operator:alice", "est.label-add", "manual", "cli@ops-host")]
    await est_env.service.add_user("manual", "dev1", PASSWORD, actor=ADMIN)
    assert [r[1:] for r in await trail.new()] == [("est.user-add", "manual/dev1", "cli@ops-host")]

    # simpleenroll with a password
    der, _ = csr_der("fire-sensor-1")
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic(), **FORWARDED}
    )
    assert resp.status == 200, await resp.text()
    (cert,) = certs_from_body(await resp.read())
    serial = format(cert.serial_number, "X")
    assert await trail.new() == [
        ("est-user:default/dev1", "cert.issue", f"issuing/{serial}", DEVICE)
    ]

    # simplereenroll with the certificate as TLS client certificate
    der, _ = csr_der("fire-sensor-1")
    resp = await est_env.client.post(
        f"{PREFIX}/simplereenroll",
        data=b64(der),
        headers={**PKCS10, "Client-Cert": rfc9440(cert), **FORWARDED},
    )
    assert resp.status == 200, await resp.text()
    (renewed,) = certs_from_body(await resp.read())
    (record,) = await trail.new()
    assert record[0].startswith("est-cert:default/")
    assert record[1:] == ("cert.issue", f"issuing/{renewed.serial_number:X}", DEVICE)

    # held for approval, approved by an operator, then issued on the device's retry
    der, _ = csr_der("door-lock-7")
    url = f"{PREFIX}/manual/simpleenroll"
    headers = {**PKCS10, **basic(), **FORWARDED}
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    assert await trail.new() == [("est-user:manual/dev1", "est.enroll-hold", pending.id, DEVICE)]
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    assert await trail.new() == []  # a retry while pending changes nothing
    await est_env.service.decide(pending.id, approve=True, actor=ADMIN)
    assert await trail.new() == [("operator:alice", "est.approve", pending.id, "cli@ops-host")]
    resp = await est_env.client.post(url, data=b64(der), headers=headers)
    assert resp.status == 200
    (held,) = certs_from_body(await resp.read())
    assert await trail.new() == [
        ("est-user:manual/dev1", "cert.issue", f"issuing/{held.serial_number:X}", DEVICE)
    ]

    # rejected
    der, _ = csr_der("intruder")
    assert (await est_env.client.post(url, data=b64(der), headers=headers)).status == 202
    (pending,) = await est_env.service.list_pending()
    assert [r[1] for r in await trail.new()] == ["est.enroll-hold"]
    await est_env.service.decide(pending.id, approve=False, actor=ADMIN)
    assert await trail.new() == [("operator:alice", "est.reject", pending.id, "cli@ops-host")]

    assert (await est_env.engine.verify_audit()).broken is None
