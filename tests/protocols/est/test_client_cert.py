"""Client-certificate auth: RFC 9440 header from trusted proxies, per-label anchors, reenroll."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp import ClientResponse
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.est import api as est_api
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
    external_leaf,
    make_external_ca,
    rfc9440,
)


async def _enrolled(
    env: EstEnv, cn: str = "fire-sensor-123", *, at: str = PREFIX, **kw: object
) -> tuple[x509.Certificate, object]:
    der, key = csr_der(cn, **kw)  # type: ignore[arg-type]
    resp = await env.client.post(f"{at}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()})
    assert resp.status == 200, await resp.text()
    (cert,) = certs_from_body(await resp.read())
    return cert, key


async def test_reenroll_keeps_identity(est_env: EstEnv) -> None:
    at = await est_env.add_label("net", dns_suffixes=("devices.internal",))
    sans = (x509.DNSName("sensor-123.devices.internal"),)
    cert, _ = await _enrolled(est_env, sans=sans, at=at)
    der, new_key = csr_der(sans=sans)  # rekey: same identity, new key
    resp = await est_env.client.post(
        f"{at}/simplereenroll",
        data=b64(der),
        headers={**PKCS10, "Client-Cert": rfc9440(cert)},
    )
    assert resp.status == 200, await resp.text()
    (renewed,) = certs_from_body(await resp.read())
    assert renewed.subject == cert.subject
    assert renewed.serial_number != cert.serial_number
    assert renewed.public_key() == new_key.public_key()
    assert list(
        renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ) == list(sans)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param("subject", "subject differs", id="fail/changed-subject"),
        pytest.param("san", "subjectAltName differs", id="fail/changed-san"),
    ],
)
async def test_reenroll_refuses_identity_change(est_env: EstEnv, change: str, reason: str) -> None:
    at = await est_env.add_label("net", dns_suffixes=("internal",))
    cert, _ = await _enrolled(est_env, sans=(x509.DNSName("a.internal"),), at=at)
    if change == "subject":
        der, _ = csr_der("someone-else", sans=(x509.DNSName("a.internal"),))
    else:
        der, _ = csr_der(sans=(x509.DNSName("b.internal"),))
    before = await est_env.cert_count()
    resp = await est_env.client.post(
        f"{at}/simplereenroll", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
    )
    assert resp.status == 403
    assert reason in await resp.text()
    assert await est_env.cert_count() == before


async def test_reenroll_subject_change_goes_to_approval(est_env: EstEnv) -> None:
    """allow_subject_change: a renamed renewal waits for an operator, never straight through."""
    at = await est_env.add_label("flex", allow_subject_change=True)
    cert, _ = await _enrolled(est_env, at=at)
    der, _ = csr_der("renamed-sensor")
    before = await est_env.cert_count()

    async def reenroll() -> ClientResponse:
        return await est_env.client.post(
            f"{at}/simplereenroll", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
        )

    resp = await reenroll()
    assert resp.status == 202, await resp.text()
    assert await est_env.cert_count() == before
    (pending,) = await est_env.service.list_pending()
    assert "CN=renamed-sensor" in pending.subject
    await est_env.service.decide(pending.id, approve=True, actor=OP)
    resp = await reenroll()
    assert resp.status == 200
    (renewed,) = certs_from_body(await resp.read())
    assert "renamed-sensor" in renewed.subject.rfc4514_string()


async def test_reenroll_refusals(est_env: EstEnv) -> None:
    cert, _ = await _enrolled(est_env)
    der, _ = csr_der()
    url = f"{PREFIX}/simplereenroll"
    before = await est_env.cert_count()
    # No credentials at all: 401 with a challenge.
    resp = await est_env.client.post(url, data=b64(der), headers=PKCS10)
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers
    # A password is not enough to renew: 403.
    resp = await est_env.client.post(url, data=b64(der), headers={**PKCS10, **basic()})
    assert resp.status == 403
    # A certificate from a foreign CA (even one a label trusts) cannot renew with privca.
    ext_ca, ext_key = make_external_ca()
    leaf, _ = external_leaf(ext_ca, ext_key, "fire-sensor-123")
    resp = await est_env.client.post(
        url, data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(leaf)}
    )
    assert resp.status == 403
    assert "is not issued by CA issuing of label default" in await resp.text()
    # Revoked: 403.
    await est_env.engine.revoke(
        cert.serial_number, principal=OP, ca="issuing", reason=RevocationReason.KEY_COMPROMISE
    )
    resp = await est_env.client.post(
        url, data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
    )
    assert resp.status == 403
    assert "revoked" in await resp.text()
    assert await est_env.cert_count() == before


async def test_expired_privca_cert_refused(est_env: EstEnv) -> None:
    cert, _ = await _enrolled(est_env)
    est_env.clock.advance(timedelta(days=4 * 365))
    der, _ = csr_der()
    before = await est_env.cert_count()
    for op in ("simplereenroll", "simpleenroll"):
        resp = await est_env.client.post(
            f"{PREFIX}/{op}", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(cert)}
        )
        assert resp.status == 403, op
        assert "expired" in await resp.text()
    assert await est_env.cert_count() == before


async def test_label_trust_anchor_idevid_enrollment(est_env: EstEnv) -> None:
    ext_ca, ext_key = make_external_ca()
    await est_env.service.add_label(
        est_api.EstLabel(
            name="factory",
            auth_modes=frozenset({est_api.AuthMode.CERT}),
            trust_anchors_pem=ext_ca.public_bytes(serialization.Encoding.PEM),
        ),
        actor=OP,
    )
    idevid, _ = external_leaf(ext_ca, ext_key, "idevid-0001")
    der, _ = csr_der("ldevid-0001")
    resp = await est_env.client.post(
        f"{PREFIX}/factory/simpleenroll",
        data=b64(der),
        headers={**PKCS10, "Client-Cert": rfc9440(idevid)},
    )
    assert resp.status == 200, await resp.text()
    before = await est_env.cert_count()
    # Untrusted (another manufacturer), and expired IDevIDs are refused with 403.
    other_ca, other_key = make_external_ca("Other Vendor CA")
    stranger, _ = external_leaf(other_ca, other_key)
    expired, _ = external_leaf(ext_ca, ext_key, expired=True)
    for bad, why in ((stranger, "not issued by a trust anchor"), (expired, "expired")):
        resp = await est_env.client.post(
            f"{PREFIX}/factory/simpleenroll",
            data=b64(der),
            headers={**PKCS10, "Client-Cert": rfc9440(bad)},
        )
        assert resp.status == 403
        assert why in await resp.text()
    # The default label does not trust the manufacturer CA.
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, "Client-Cert": rfc9440(idevid)}
    )
    assert resp.status == 403
    assert await est_env.cert_count() == before


@pytest.mark.parametrize(
    ("value", "status"),
    [
        pytest.param(":not base64!:", 400, id="fail/bad-9440-base64"),
        pytest.param("garbage", 400, id="fail/not-9440"),
        pytest.param(":aGVsbG8=:", 403, id="fail/9440-not-a-certificate"),
    ],
)
async def test_malformed_forwarded_cert(est_env: EstEnv, value: str, status: int) -> None:
    der, _ = csr_der()
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, "Client-Cert": value}
    )
    assert resp.status == status
    assert await est_env.cert_count() == 2


async def test_forwarded_pem_header_accepted(est_env: EstEnv) -> None:
    import urllib.parse

    cert, _ = await _enrolled(est_env)
    der, _ = csr_der()
    value = urllib.parse.quote(cert.public_bytes(serialization.Encoding.PEM).decode())
    resp = await est_env.client.post(
        f"{PREFIX}/simplereenroll", data=b64(der), headers={**PKCS10, "Client-Cert": value}
    )
    assert resp.status == 200


async def test_privca_cert_enrolls_only_its_own_identity(est_env: EstEnv) -> None:
    cert, _ = await _enrolled(est_env, "sensor-a")
    headers = {**PKCS10, "Client-Cert": rfc9440(cert)}
    before = await est_env.cert_count()
    der, _ = csr_der("sensor-b")
    resp = await est_env.client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=headers)
    assert resp.status == 403
    assert "differs from the authenticating certificate" in await resp.text()
    resp = await est_env.client.post(f"{PREFIX}/serverkeygen", data=b64(der), headers=headers)
    assert resp.status == 403
    assert await est_env.cert_count() == before
    der, _ = csr_der("sensor-a")
    resp = await est_env.client.post(f"{PREFIX}/simpleenroll", data=b64(der), headers=headers)
    assert resp.status == 200


async def test_certificate_of_an_expired_trust_anchor_refused(est_env: EstEnv) -> None:
    """A vendor anchor past its validity logs in nobody, though its leaves are still valid."""
    vendor, vendor_key = make_external_ca(expired=True)
    await est_env.service.add_label(
        est_api.EstLabel(
            name="factory", trust_anchors_pem=vendor.public_bytes(serialization.Encoding.PEM)
        ),
        actor=OP,
    )
    idevid, _ = external_leaf(vendor, vendor_key)
    der, _ = csr_der()
    before = await est_env.cert_count()
    resp = await est_env.client.post(
        f"{PREFIX}/factory/simpleenroll",
        data=b64(der),
        headers={**PKCS10, "Client-Cert": rfc9440(idevid)},
    )
    assert resp.status == 403
    assert "not issued by a trust anchor of label factory" in await resp.text()
    assert await est_env.cert_count() == before
