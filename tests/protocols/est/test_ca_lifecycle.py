"""EST against a disabled or revoked issuing CA: enrollment refused, its certificates no login."""

from __future__ import annotations

from cryptography import x509

from server.ca.types import RevocationReason
from tests.protocols.est.conftest import (
    OP,
    PKCS10,
    PREFIX,
    EstEnv,
    b64,
    basic,
    certs_from_body,
    csr_der,
    rfc9440,
)


async def _enrolled(env: EstEnv) -> x509.Certificate:
    der, _ = csr_der("fire-sensor-123")
    resp = await env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200, await resp.text()
    (cert,) = certs_from_body(await resp.read())
    return cert


async def test_disabled_ca_enrolls_nothing_until_enabled(est_env: EstEnv) -> None:
    await est_env.engine.disable_ca("issuing", actor=OP)
    der, _ = csr_der("fire-sensor-1")
    before = await est_env.cert_count()
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 403
    assert "ca.state: CA issuing is disabled" in await resp.text()
    assert await est_env.cert_count() == before
    await est_env.engine.enable_ca("issuing", actor=OP)
    await _enrolled(est_env)


async def test_revoked_ca_certificates_no_longer_reenroll(est_env: EstEnv) -> None:
    cert = await _enrolled(est_env)
    await est_env.engine.revoke_ca("issuing", reason=RevocationReason.KEY_COMPROMISE, actor=OP)
    der, _ = csr_der()
    before = await est_env.cert_count()
    resp = await est_env.client.post(
        f"{PREFIX}/simplereenroll", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
    )
    assert resp.status == 403
    # The EST client-certificate check trusts only active privca CAs.
    assert "not issued by a trust anchor" in await resp.text()
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 403
    assert "is revoked" in await resp.text()
    assert await est_env.cert_count() == before


async def test_cacerts_publishes_the_renewed_chain(est_env: EstEnv) -> None:
    renewal = await est_env.engine.renew_ca("issuing", actor=OP)
    resp = await est_env.client.get(f"{PREFIX}/cacerts")
    assert resp.status == 200
    certs = certs_from_body(await resp.read())
    assert renewal.certificate in certs
    assert est_env.chain[0] not in certs  # the certificate it replaced
