"""Issue 12's EST repros over HTTP: each is refused with the EST status and the rule's name.

A Basic account on the default label asking for server names; a short-lived
certificate exchanged for a device certificate; a privca certificate renewing on
a label bound to a vendor anchor; a subject change straight through; a forwarded
certificate without clientAuth. Plus label subject patterns.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import grants
from server.ca.est import api as est_api
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


async def _post(env: EstEnv, url: str, der: bytes, headers: dict[str, str]) -> tuple[int, str]:
    resp = await env.client.post(url, data=b64(der), headers={**PKCS10, **headers})
    return resp.status, await resp.text()


async def _enroll(env: EstEnv, at: str, der: bytes) -> x509.Certificate:
    resp = await env.client.post(f"{at}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()})
    assert resp.status == 200, await resp.text()
    (cert,) = certs_from_body(await resp.read())
    return cert


@pytest.mark.parametrize(
    ("san", "detail"),
    [
        pytest.param(
            x509.DNSName("vault.corp.internal"), "DNS names are not granted", id="fail/dns"
        ),
        pytest.param(x509.DNSName("*.corp.internal"), "DNS names are not granted", id="fail/wild"),
        pytest.param(
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            "IP addresses are not granted",
            id="fail/ip",
        ),
        pytest.param(
            x509.UniformResourceIdentifier("spiffe://corp/ns/prod/sa/admin"),
            "URIs are not granted",
            id="fail/uri",
        ),
        pytest.param(
            x509.RFC822Name("ceo@corp.example"), "e-mail addresses are not granted", id="fail/email"
        ),
    ],
)
async def test_default_label_basic_account_gets_no_names(
    est_env: EstEnv, san: x509.GeneralName, detail: str
) -> None:
    before = await est_env.cert_count()
    der, _ = csr_der("vault", sans=(san,))
    for op in ("simpleenroll", "serverkeygen"):
        status, text = await _post(est_env, f"{PREFIX}/{op}", der, basic())
        assert status == 400, op
        assert text.strip() == f"grant.san-type: {detail}"
    assert await est_env.cert_count() == before


async def test_short_lived_certificate_is_not_exchanged_for_a_device_certificate(
    est_env: EstEnv,
) -> None:
    # 1 h certificates from the CLI (serverAuth+clientAuth) and from a short-lived label.
    der, _ = csr_der("node1", sans=(x509.DNSName("node1.internal"),), serial_number=None)
    cli = await est_env.engine.issue(
        der,
        grant=grants.OPERATOR,
        principal=OP,
        profile="short-lived",
        lifetime=timedelta(hours=1),
    )
    at = await est_env.add_label("short", profile="short-lived", dns_suffixes=("internal",))
    labelled = await _enroll(est_env, at, der)
    before = await est_env.cert_count()
    for cert, why in (
        (cli.certificate, "not issued on label default"),
        (labelled, "issued on label short, not default"),
    ):
        headers = {"Client-Cert": rfc9440(cert)}
        status, text = await _post(est_env, f"{PREFIX}/simplereenroll", der, headers)
        assert status == 403
        assert why in text
        status, text = await _post(est_env, f"{PREFIX}/simpleenroll", der, headers)
        assert status == 403
    assert await est_env.cert_count() == before
    # On its own label it renews as what it was: short-lived.
    status, text = await _post(
        est_env, f"{at}/simplereenroll", der, {"Client-Cert": rfc9440(labelled)}
    )
    assert status == 200, text


async def test_vendor_label_does_not_renew_other_privca_certificates(est_env: EstEnv) -> None:
    vendor, vendor_key = make_external_ca()
    await est_env.service.add_label(
        est_api.EstLabel(
            name="factory",
            auth_modes=frozenset({est_api.AuthMode.CERT}),
            trust_anchors_pem=vendor.public_bytes(serialization.Encoding.PEM),
        ),
        actor=OP,
    )
    der, _ = csr_der()
    privca = await _enroll(est_env, PREFIX, der)  # a device of the default label
    before = await est_env.cert_count()
    for op in ("simpleenroll", "simplereenroll"):
        status, _ = await _post(
            est_env, f"{PREFIX}/factory/{op}", der, {"Client-Cert": rfc9440(privca)}
        )
        assert status == 403, op
    assert await est_env.cert_count() == before
    # The label's own devices (IDevID -> LDevID) renew their LDevID there.
    idevid, _ = external_leaf(vendor, vendor_key, "idevid-1")
    resp = await est_env.client.post(
        f"{PREFIX}/factory/simpleenroll",
        data=b64(der),
        headers={**PKCS10, "Client-Cert": rfc9440(idevid)},
    )
    assert resp.status == 200
    (ldevid,) = certs_from_body(await resp.read())
    status, text = await _post(
        est_env, f"{PREFIX}/factory/simplereenroll", der, {"Client-Cert": rfc9440(ldevid)}
    )
    assert status == 200, text


async def test_subject_change_never_goes_straight_through(est_env: EstEnv) -> None:
    sans = (
        x509.RFC822Name("ceo@corp.example"),
        x509.UniformResourceIdentifier("spiffe://corp/ns/prod/sa/admin"),
    )
    admin, _ = csr_der("admin", sans=sans, serial_number=None)
    flex = await est_env.add_label("flex", allow_subject_change=True)
    cert = await _enroll(est_env, flex, csr_der()[0])
    before = await est_env.cert_count()
    # The label grants no e-mail or URI: refused before anything is held.
    status, text = await _post(
        est_env, f"{flex}/simplereenroll", admin, {"Client-Cert": rfc9440(cert)}
    )
    assert status == 400
    assert "ceo@corp.example: grant.san-type: e-mail addresses are not granted" in text
    assert "spiffe://corp/ns/prod/sa/admin: grant.san-type: URIs are not granted" in text
    assert await est_env.pending_count() == 0
    # A label that grants them still holds the change for an operator.
    wide = await est_env.add_label(
        "wide",
        allow_subject_change=True,
        uri_patterns=("spiffe://corp/*",),
        email_domains=("corp.example",),
    )
    cert = await _enroll(est_env, wide, csr_der()[0])
    status, _ = await _post(
        est_env, f"{wide}/simplereenroll", admin, {"Client-Cert": rfc9440(cert)}
    )
    assert status == 202
    assert await est_env.pending_count() == 1
    assert await est_env.cert_count() == before + 1


async def test_forwarded_certificate_needs_client_auth(est_env: EstEnv) -> None:
    vendor, vendor_key = make_external_ca()
    await est_env.service.add_label(
        est_api.EstLabel(
            name="factory", trust_anchors_pem=vendor.public_bytes(serialization.Encoding.PEM)
        ),
        actor=OP,
    )
    no_eku, _ = external_leaf(vendor, vendor_key, client_auth=False)
    der, _ = csr_der()
    status, text = await _post(
        est_env, f"{PREFIX}/factory/simpleenroll", der, {"Client-Cert": rfc9440(no_eku)}
    )
    assert status == 403
    assert "clientAuth" in text
    # A privca server certificate (serverAuth only) forwarded on a tls-server label.
    await est_env.service.add_label(
        est_api.EstLabel(name="web", profile="tls-server", dns_suffixes=("internal",)), actor=OP
    )
    web_csr, _ = csr_der("web", sans=(x509.DNSName("web.internal"),), serial_number=None)
    server = await est_env.engine.issue(
        web_csr, grant=grants.OPERATOR, principal=OP, profile="tls-server"
    )
    status, text = await _post(
        est_env, f"{PREFIX}/web/simpleenroll", web_csr, {"Client-Cert": rfc9440(server.certificate)}
    )
    assert status == 403
    assert "clientAuth" in text


async def test_subject_pattern_label(est_env: EstEnv) -> None:
    at = await est_env.add_label("sensors", subject_patterns=("CN=fire-sensor-*",))
    ok, _ = csr_der("fire-sensor-42", serial_number=None)
    assert "fire-sensor-42" in (await _enroll(est_env, at, ok)).subject.rfc4514_string()
    other, _ = csr_der("door-lock-1", serial_number=None)
    status, text = await _post(est_env, f"{at}/simpleenroll", other, basic())
    assert status == 400
    assert text.startswith("grant.subject: 'CN=door-lock-1' matches none of CN=fire-sensor-*")
