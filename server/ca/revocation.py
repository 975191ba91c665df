"""Revocation artefacts: CRLs (RFC 5280 §5) and OCSP responses (RFC 6960).

Pure builders over already-loaded records and an ``Issuer``; the engine
decides when to build and storage keeps the results. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from server.ca.issuance import Issuer
from server.ca.types import RevocationReason

__all__ = [
    "OcspStatus",
    "build_ocsp_response",
    "reason_flag",
    "sign_crl",
]

_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.REMOVE_FROM_CRL: x509.ReasonFlags.remove_from_crl,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}


def reason_flag(reason: RevocationReason | None) -> x509.ReasonFlags | None:
    """Return cryptography's flag; None for unspecified (RFC 5280: omit the reasonCode)."""
    if reason is None or reason is RevocationReason.UNSPECIFIED:
        return None
    return _FLAGS[reason]


def sign_crl(
    issuer: Issuer,
    revoked: Sequence[x509.RevokedCertificate],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    distribution_point: str | None,
) -> x509.CertificateRevocationList:
    """Sign a complete CRL (RFC 5280 §5) over already-built entries.

    The entries are handed to the builder in one list: adding them one by one
    is quadratic in cryptography.
    """
    extensions: list[x509.Extension[x509.ExtensionType]] = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
        x509.Extension(x509.AuthorityKeyIdentifier.oid, False, issuer.aki),
    ]
    if distribution_point:
        idp = x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(distribution_point)],
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        # RFC 5280 §5.2.5: the IDP extension is critical.
        extensions.append(x509.Extension(idp.oid, True, idp))
    return x509.CertificateRevocationListBuilder(
        issuer_name=issuer.certificate.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=extensions,
        revoked_certificates=list(revoked),
    ).sign(issuer.key, issuer.hash)


@dataclass(frozen=True, slots=True)
class OcspStatus:
    """The status of one serial as the responder reports it."""

    serial: int
    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None


def build_ocsp_response(
    signer: Issuer,
    *,
    issuer_name_hash: bytes,
    issuer_key_hash: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    status: OcspStatus,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None = None,
    responder_chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign a successful OCSP response for one CertID (RFC 6960 §4.2)."""
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=issuer_name_hash,
            issuer_key_hash=issuer_key_hash,
            serial_number=status.serial,
            algorithm=hash_algorithm,
            cert_status=status.status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=status.revoked_at,
            revocation_reason=reason_flag(status.reason) if status.revoked_at else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
    )
    if responder_chain:
        builder = builder.certificates(list(responder_chain))
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(signer.key, signer.hash)
    return response.public_bytes(serialization.Encoding.DER)
