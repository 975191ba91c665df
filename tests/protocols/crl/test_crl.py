"""CRL and caIssuers over HTTP: DER documents, caching headers, openssl verify -crl_check."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.types import RevocationReason
from server.wiring import Services
from tests.protocols.ocsp.conftest import OP, issue
from tests.support import openssl_verify


async def _crl(client: TestClient[Any, Any], ca_id: str) -> x509.CertificateRevocationList:
    resp = await client.get(f"/crl/{ca_id}.crl")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(await resp.read())


async def test_crl_served_with_headers_and_etag(
    services: Services, client: TestClient[Any, Any]
) -> None:
    ca = await services.engine.get_ca(None)
    resp = await client.get(f"/crl/{ca.id}.crl")
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("max-age=")
    crl = x509.load_der_x509_crl(await resp.read())
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    again = await client.get(f"/crl/{ca.id}.crl", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/crl/000000000000.crl", id="fail/unknown-ca"),
        pytest.param("/crl/issuing.crl", id="fail/name-not-id"),
        pytest.param("/crl/..%2F..%2Fetc.crl", id="fail/traversal"),
        pytest.param("/crl/x.pem", id="fail/wrong-suffix"),
        pytest.param("/ca/000000000000.cer", id="fail/unknown-ca-cert"),
    ],
)
async def test_unknown_paths_are_404_text(
    services: Services, client: TestClient[Any, Any], path: str
) -> None:
    crls_before = len(services.status.crls._latest) if services.status else 0
    resp = await client.get(path)
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert services.status is not None
    assert len(services.status.crls._latest) == crls_before


async def test_ca_issuers_certificate(services: Services, client: TestClient[Any, Any]) -> None:
    ca = await services.engine.get_ca(None)
    resp = await client.get(f"/ca/{ca.id}.cer")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/pkix-cert"
    assert await resp.read() == ca.certificate.public_bytes(serialization.Encoding.DER)
    # the URL is the one written into leaves
    leaf = await issue(services)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = [d.access_location.value for d in aia]
    assert any(u.endswith(f"/ca/{ca.id}.cer") for u in urls)


async def test_openssl_crl_check_good_then_revoked(
    services: Services, client: TestClient[Any, Any]
) -> None:
    assert services.status is not None
    ca = await services.engine.get_ca(None)
    chain = await services.engine.chain_of(ca)
    root = await services.engine.get_ca(services.settings.ca.root_name)
    leaf = await issue(services)
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None
    assert str(cdp[0].full_name[0].value).endswith(f"/crl/{ca.id}.crl")

    def der(crl: x509.CertificateRevocationList) -> bytes:
        return crl.public_bytes(serialization.Encoding.DER)

    crls = [der(await _crl(client, ca.id)), der(await _crl(client, root.id))]
    ok = openssl_verify(leaf, chain, extra=["-crl_check_all"], crls=crls)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    await services.engine.revoke(
        leaf.serial_number, principal=OP, reason=RevocationReason.KEY_COMPROMISE
    )
    await services.status.crls.tick()  # debounce 0 in this test configuration
    services.status.crls._latest.clear()
    fresh = await _crl(client, ca.id)
    assert fresh.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    bad = openssl_verify(leaf, chain, extra=["-crl_check"], crls=[der(fresh)])
    assert bad.returncode != 0
    assert b"certificate revoked" in bad.stdout + bad.stderr
