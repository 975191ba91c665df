"""CRL signing (RFC 5280 §5) and reason codes, shared by the CRL codec.

Pure builders over already-built entries and an ``Issuer``; the CRL publisher
(``server/ca/status/crls.py``) decides when to build and storage keeps the
results. OCSP responses are signed by ``server/ca/status/responder.py``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from server.ca.issuance import Issuer
from server.ca.types import RevocationReason

__all__ = ["reason_flag", "sign_crl"]

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
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.certificate.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=extensions,
        revoked_certificates=list(revoked),
    )
    return issuer.signer.sign_crl(builder)
