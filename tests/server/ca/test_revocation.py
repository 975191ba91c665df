"""Revocation: engine reasons, then CRLs (the publisher) and OCSP responses (the responder)
read back by openssl and cryptography."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from server.ca import api, grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.status import api as status_api
from server.ca.status import responder
from server.ca.types import CertStatus, CrlRecord, KeyAlgorithm, Principal, RevocationReason
from server.store.memory import MemoryRepository, MemoryStatusRepository
from tests.support import make_csr, openssl, openssl_verify

OP = Principal("operator", "test")


@pytest.fixture
def status(engine: api.CAEngine, memory_repo: MemoryRepository) -> status_api.StatusService:
    """The status service over the engine's memory repository, echoing OCSP nonces."""
    settings = status_api.StatusSettings(ocsp=responder.ResponderSettings(nonce_echo=True))
    return status_api.StatusService(
        engine, memory_repo, MemoryStatusRepository(memory_repo), settings=settings
    ).attach()


async def _crl(engine: api.CAEngine, status: status_api.StatusService, ca: str) -> CrlRecord:
    """Publish a fresh CRL of ``ca`` as ``privca crl generate`` does."""
    record = await status.crls.regenerate(await engine.get_ca(ca), actor=str(OP))
    assert record is not None
    return record


def _ocsp_request(issuer: x509.Certificate, serial: int, *, nonce: bytes | None = None) -> bytes:
    name_hash = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 5019 mandates SHA-1 CertIDs
    name_hash.update(issuer.subject.public_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(),
        x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest,
        serial,
        hashes.SHA1(),  # noqa: S303 - RFC 5019 mandates SHA-1 CertIDs
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


async def _setup(engine: api.CAEngine, alg: KeyAlgorithm = KeyAlgorithm.EC_P256) -> None:
    await engine.create_root("root", actor=OP, key_algorithm=alg)
    await engine.create_subordinate("issuing", parent="root", actor=OP, key_algorithm=alg)


async def test_revoke_reasons_and_errors(engine: api.CAEngine) -> None:
    await _setup(engine)
    csr, _ = make_csr()
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    serial = issued.certificate.serial_number
    rec = await engine.revoke(serial, principal=OP, reason=RevocationReason.KEY_COMPROMISE)
    assert rec.status is CertStatus.REVOKED
    assert rec.revocation_reason is RevocationReason.KEY_COMPROMISE
    with pytest.raises(EngineError) as err:
        await engine.revoke(serial, principal=OP)
    assert err.value.kind is ProblemKind.ALREADY_REVOKED
    with pytest.raises(EngineError) as err:
        await engine.revoke(0xDEAD, principal=OP)
    assert err.value.kind is ProblemKind.NOT_FOUND
    other, _ = make_csr()
    second = await engine.issue(other, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    with pytest.raises(EngineError) as err:
        await engine.revoke(
            second.certificate.serial_number, principal=OP, reason=RevocationReason.REMOVE_FROM_CRL
        )
    assert err.value.kind is ProblemKind.BAD_REVOCATION_REASON
    assert RevocationReason.from_code(1) is RevocationReason.KEY_COMPROMISE
    with pytest.raises(ValueError, match="unknown CRL reason"):
        RevocationReason.from_code(7)


@pytest.mark.parametrize("alg", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048, KeyAlgorithm.ED25519])
async def test_crl_parsed_by_openssl_and_used_by_verify(
    engine: api.CAEngine, status: status_api.StatusService, alg: KeyAlgorithm, tmp_path: Path
) -> None:
    await _setup(engine, alg)
    good_csr, _ = make_csr(["dns:good.internal"])
    bad_csr, _ = make_csr(["dns:bad.internal"])
    good = await engine.issue(good_csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    bad = await engine.issue(bad_csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    await engine.revoke(
        bad.certificate.serial_number, principal=OP, reason=RevocationReason.CESSATION_OF_OPERATION
    )
    first = await _crl(engine, status, "issuing")
    crl_rec = await _crl(engine, status, "issuing")
    assert crl_rec.number == first.number + 1
    crl = x509.load_der_x509_crl(crl_rec.der)
    assert crl.is_signature_valid(good.chain[0].public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(bad.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.cessation_of_operation
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == crl_rec.number
    crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    cdp = good.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert idp.value.full_name == cdp[0].full_name
    (tmp_path / "crl.der").write_bytes(crl_rec.der)
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert b"Cessation Of Operation" in text.stdout
    # openssl verify -crl_check: the good leaf passes, the revoked one fails.
    root_crl = await _crl(engine, status, "root")
    ok = openssl_verify(
        good.certificate, good.chain, extra=["-crl_check_all"], crls=[crl_rec.der, root_crl.der]
    )
    assert ok.returncode == 0, ok.stderr
    revoked = openssl_verify(bad.certificate, bad.chain, extra=["-crl_check"], crls=[crl_rec.der])
    assert revoked.returncode != 0
    assert b"certificate revoked" in revoked.stderr + revoked.stdout


async def test_revoked_intermediate_on_parent_crl(
    engine: api.CAEngine, status: status_api.StatusService
) -> None:
    await _setup(engine)
    csr, _ = make_csr()
    leaf = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    issuing = leaf.chain[0]
    await engine.revoke(
        issuing.serial_number, principal=OP, reason=RevocationReason.CA_COMPROMISE, ca="root"
    )
    root_crl = await _crl(engine, status, "root")
    leaf_crl = await _crl(engine, status, "issuing")
    result = openssl_verify(
        leaf.certificate, leaf.chain, extra=["-crl_check_all"], crls=[root_crl.der, leaf_crl.der]
    )
    assert result.returncode != 0
    assert b"certificate revoked" in result.stderr + result.stdout


async def test_ocsp_responses_good_revoked_unknown(
    engine: api.CAEngine, status: status_api.StatusService, tmp_path: Path
) -> None:
    await _setup(engine)
    await status.start()
    csr, _ = make_csr()
    leaf = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    serial = leaf.certificate.serial_number
    issuer = leaf.chain[0]

    def status_of(der: bytes) -> ocsp.OCSPCertStatus:
        resp = ocsp.load_der_ocsp_response(der)
        assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        key = issuer.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        return resp.certificate_status

    async def answer(serial: int, *, nonce: bytes | None = None) -> bytes:
        return (await status.ocsp(_ocsp_request(issuer, serial, nonce=nonce))).der

    assert status_of(await answer(serial)) is ocsp.OCSPCertStatus.GOOD
    assert status_of(await answer(12345)) is ocsp.OCSPCertStatus.UNKNOWN
    await engine.revoke(serial, principal=OP, reason=RevocationReason.SUPERSEDED)
    der = await answer(serial, nonce=b"0123456789abcdef")
    assert status_of(der) is ocsp.OCSPCertStatus.REVOKED
    resp = ocsp.load_der_ocsp_response(der)
    assert resp.revocation_reason is x509.ReasonFlags.superseded
    assert (
        resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    )
    # openssl parses it and checks the issuer's signature and the CertID.
    (tmp_path / "resp.der").write_bytes(der)
    (tmp_path / "issuer.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(leaf.chain[-1].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.certificate.public_bytes(serialization.Encoding.PEM))
    out = openssl(
        "ocsp",
        "-respin",
        str(tmp_path / "resp.der"),
        "-issuer",
        str(tmp_path / "issuer.pem"),
        "-cert",
        str(tmp_path / "leaf.pem"),
        "-CAfile",
        str(tmp_path / "root.pem"),
        "-verify_other",
        str(tmp_path / "issuer.pem"),
        "-no_nonce",
    )
    assert out.returncode == 0, out.stderr
    assert b"revoked" in out.stdout
    assert b"Reason: superseded" in out.stdout
    assert b"Response verify OK" in out.stderr
