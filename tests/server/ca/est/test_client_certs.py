"""EST client-certificate login: privca and label trust anchors, validity, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import api, grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.types import Principal
from tests.protocols.est.conftest import external_leaf, make_external_ca
from tests.server.ca.est.conftest import OP
from tests.support import FakeClock, make_csr, pem

DER = serialization.Encoding.DER


async def _device_cert(engine: api.CAEngine, ca: str = "issuing") -> x509.Certificate:
    csr, _ = make_csr(("dns:dev1.internal",), subject="dev1")
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="device", ca=ca)
    return issued.certificate


async def _refusal(
    service: est_api.EstService, label: est_api.EstLabel, der: bytes, **kw: bool
) -> str:
    with pytest.raises(EngineError) as err:
        await service.authenticate_certificate(label, der, **kw)
    assert err.value.kind is ProblemKind.UNAUTHORIZED
    return err.value.detail


async def test_privca_certificate_logs_in(
    service: est_api.EstService, engine: api.CAEngine
) -> None:
    cert = await _device_cert(engine)
    label = await service.get_label(None)
    ident = await service.authenticate_certificate(label, cert.public_bytes(DER))
    assert ident.principal == Principal("est-cert", f"default/CN=dev1#{cert.serial_number:X}")
    assert ident.certificate == cert
    assert ident.issuer_ca is not None
    assert ident.issuer_ca.name == "issuing"


async def test_refusals(
    service: est_api.EstService, engine: api.CAEngine, est_clock: FakeClock
) -> None:
    cert = await _device_cert(engine)
    der = cert.public_bytes(DER)
    label = await service.get_label(None)
    pw_only = est_api.EstLabel(name="pw", auth_modes=frozenset({est_api.AuthMode.BASIC}))
    assert "does not accept client certificates" in await _refusal(service, pw_only, der)
    # Re-enrollment obeys the label's auth modes too (a password label renews by simpleenroll).
    detail = await _refusal(service, pw_only, der, for_reenroll=True)
    assert "does not accept client certificates" in detail
    assert "does not parse" in await _refusal(service, label, b"\x30\x00")
    est_clock.advance(cert.not_valid_after_utc - est_clock.now() + timedelta(seconds=1))
    assert "expired" in await _refusal(service, label, der)


async def test_revoked_certificate_refused(
    service: est_api.EstService, engine: api.CAEngine
) -> None:
    cert = await _device_cert(engine)
    label = await service.get_label(None)
    await engine.revoke(cert.serial_number, principal=OP, ca="issuing")
    assert "revoked" in await _refusal(service, label, cert.public_bytes(DER))


async def test_label_trust_anchors(service: est_api.EstService, engine: api.CAEngine) -> None:
    factory_ca, factory_key = make_external_ca()
    idevid, _ = external_leaf(factory_ca, factory_key)
    privca = await _device_cert(engine)
    await service.add_label(
        est_api.EstLabel(name="factory", trust_anchors_pem=pem(factory_ca)), actor=OP
    )
    label = await service.get_label("factory")
    ident = await service.authenticate_certificate(label, idevid.public_bytes(DER))
    assert ident.certificate == idevid
    assert ident.issuer_ca is None
    # The label's anchors replace privca's CAs for enrollment...
    detail = await _refusal(service, label, privca.public_bytes(DER))
    assert "not issued by a trust anchor of label factory" in detail
    # ...and re-enrollment trusts the label's CA only, for certificates of this label.
    detail = await _refusal(service, label, privca.public_bytes(DER), for_reenroll=True)
    assert detail == "the certificate being renewed was not issued on label factory"
    detail = await _refusal(service, label, idevid.public_bytes(DER), for_reenroll=True)
    assert "is not issued by CA issuing of label factory" in detail
    anchors = await service.tls_trust_anchors()
    assert factory_ca in anchors
    assert (await engine.get_ca("issuing")).certificate in anchors
    assert (await engine.get_ca("root")).certificate in anchors
