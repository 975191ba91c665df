"""Certificate building and signing: profile + request -> signed X.509.

Everything here is synchronous and pure over its inputs (keys, times and
serials are passed in). ``Issuer`` bundles what is reused for every leaf of a
CA so the hot path only builds and signs. Must not import aiohttp, josepy or
sqlalchemy; storage and policy decisions live in ``api.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca import keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.profiles import Profile
from server.ca.signer import Signer

__all__ = [
    "EXTRA_ATTRIBUTES",
    "MAX_BACKDATE",
    "MAX_CN_LENGTH",
    "Issuer",
    "RevocationUrls",
    "build_ca_certificate",
    "build_leaf",
    "leaf_subject",
    "load_csr",
    "parse_name",
    "requested_names",
]

MAX_CN_LENGTH: Final = 64
MAX_BACKDATE: Final = timedelta(hours=1)
OCSP_SIGNER_BACKDATE: Final = timedelta(minutes=5)
"""How far back a requested notBefore may lie (RFC 5280 allows any; CAs backdate only for skew)."""


@dataclass(frozen=True, slots=True)
class RevocationUrls:
    """Where validators fetch revocation data and the issuer certificate (RFC 5280 §4.2.2.1)."""

    crl: str | None
    ocsp: str | None
    ca_issuers: str | None


def _aia_cdp(urls: RevocationUrls | None) -> list[tuple[x509.ExtensionType, bool]]:
    if urls is None:
        return []
    out: list[tuple[x509.ExtensionType, bool]] = []
    if urls.crl:
        out.append(
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(urls.crl)], None, None, None
                        )
                    ]
                ),
                False,
            )
        )
    descriptions = []
    if urls.ocsp:
        descriptions.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(urls.ocsp),
            )
        )
    if urls.ca_issuers:
        descriptions.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_issuers),
            )
        )
    if descriptions:
        out.append((x509.AuthorityInformationAccess(descriptions), False))
    return out


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA ready to sign: certificate, key and the extensions every child repeats."""

    certificate: x509.Certificate
    signer: Signer
    aki: x509.AuthorityKeyIdentifier
    child_extensions: tuple[tuple[x509.ExtensionType, bool], ...]
    name_constraints: tuple[x509.NameConstraints, ...] = ()

    @classmethod
    def create(
        cls,
        certificate: x509.Certificate,
        signer: Signer | CertificateIssuerPrivateKeyTypes,
        *,
        urls: RevocationUrls | None,
        chain: Sequence[x509.Certificate] = (),
    ) -> Issuer:
        """Precompute the AKI, CDP/AIA and the name constraints along ``chain``."""
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        return cls(
            certificate=certificate,
            signer=keys.as_signer(signer),
            aki=aki,
            child_extensions=tuple(_aia_cdp(urls)),
            name_constraints=tuple(chain_name_constraints(certificate, *chain)),
        )

    @property
    def not_after(self) -> datetime:
        """Return the issuer's expiry; children never outlive it."""
        return self.certificate.not_valid_after_utc

    @property
    def not_before(self) -> datetime:
        """Return the start of the issuer's validity; no child starts earlier."""
        return self.certificate.not_valid_before_utc


EXTRA_ATTRIBUTES: Final = {
    "serialNumber": NameOID.SERIAL_NUMBER,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "GN": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "title": NameOID.TITLE,
}
"""Attribute names RFC 4514 lacks that names privca parses (and subject patterns) may use."""


def parse_name(text: str) -> x509.Name:
    """Parse an RFC 4514 DN, also accepting serialNumber, emailAddress, GN, SN, title.

    Raises:
        EngineError: MALFORMED when it does not parse.
    """
    try:
        return x509.Name.from_rfc4514_string(text, EXTRA_ATTRIBUTES)
    except ValueError as exc:
        raise EngineError(ProblemKind.MALFORMED, f"cannot parse the name {text!r}") from exc


def chain_name_constraints(*certs: x509.Certificate) -> list[x509.NameConstraints]:
    """Return the NameConstraints along a chain (issuer first), for checking a leaf's names."""
    out = []
    for cert in certs:
        try:
            out.append(cert.extensions.get_extension_for_class(x509.NameConstraints).value)
        except x509.ExtensionNotFound:
            continue
    return out


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER PKCS#10 request and check its self-signature.

    Raises:
        EngineError: BAD_CSR when it does not parse or its signature is wrong;
            BAD_PUBLIC_KEY for a refused key.
    """
    try:
        csr = (
            x509.load_pem_x509_csr(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_csr(data)
        )
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise EngineError(ProblemKind.BAD_CSR, "the CSR is not a valid PKCS#10 request") from exc
    except Exception as exc:
        raise EngineError(
            ProblemKind.BAD_CSR, f"the CSR cannot be used: {type(exc).__name__}"
        ) from exc
    if not valid:
        raise EngineError(ProblemKind.BAD_CSR, "the CSR signature does not verify")
    keys.algorithm_of(public_key)
    return csr


def requested_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """Return the CSR's subjectAltNames (extensionRequest), empty if none.

    Raises:
        EngineError: BAD_CSR when the extension request is malformed.
    """
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise EngineError(ProblemKind.BAD_CSR, "the CSR's extension request is malformed") from exc
    return list(ext.value)


def leaf_subject(
    profile: Profile, csr_subject: x509.Name, names: Sequence[x509.GeneralName]
) -> x509.Name:
    """Return the subject a leaf gets under ``profile``."""
    if profile.keep_subject and len(csr_subject) > 0:
        return csr_subject
    for name in names:
        value = str(name.value)
        if isinstance(name, (x509.DNSName, x509.IPAddress)) and len(value) <= MAX_CN_LENGTH:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    return x509.Name([])


def _key_usage(*, digital_signature: bool, key_encipherment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _end_entity(
    issuer: Issuer,
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    validity: tuple[datetime, datetime],
    key_encipherment: bool,
) -> x509.CertificateBuilder:
    """Return the parts every end-entity certificate shares: names, key, validity, BC/KU/KIDs."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=key_encipherment, ca=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(issuer.aki, critical=False)
    )


def build_leaf(
    issuer: Issuer,
    *,
    public_key: CertificatePublicKeyTypes,
    subject: x509.Name,
    names: Sequence[x509.GeneralName],
    profile: Profile,
    not_before: datetime,
    not_after: datetime,
    serial: int,
) -> x509.Certificate:
    """Build and sign an end-entity certificate under ``profile``."""
    key_encipherment = profile.rsa_key_encipherment and isinstance(public_key, rsa.RSAPublicKey)
    builder = _end_entity(
        issuer,
        subject=subject,
        public_key=public_key,
        serial=serial,
        validity=(not_before, not_after),
        key_encipherment=key_encipherment,
    )
    if profile.extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usages)), critical=False
        )
    if names:
        # RFC 5280 §4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(names)), critical=len(subject) == 0
        )
    for ext, critical in issuer.child_extensions:
        builder = builder.add_extension(ext, critical=critical)
    return issuer.signer.sign_certificate(builder)


def build_ca_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: Issuer | None,
    self_key: Signer | None,
    not_before: datetime,
    not_after: datetime,
    serial: int,
    path_length: int | None,
    name_constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """Build and sign a CA certificate: self-signed when ``issuer`` is None."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=False, ca=True), critical=True
        )
        .add_extension(ski, critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(issuer.aki, critical=False)
        for ext, critical in issuer.child_extensions:
            builder = builder.add_extension(ext, critical=critical)
    if name_constraints is not None:
        # RFC 5280 §4.2.1.10: conforming CAs MUST mark name constraints critical.
        builder = builder.add_extension(name_constraints, critical=True)
    if issuer is not None:
        return issuer.signer.sign_certificate(builder)
    if self_key is None:
        raise ValueError("a self-signed CA certificate needs its own key")
    return self_key.sign_certificate(builder)


def build_ocsp_signer(
    issuer: Issuer,
    *,
    public_key: CertificatePublicKeyTypes,
    name: str,
    not_before: datetime,
    not_after: datetime,
    serial: int,
) -> x509.Certificate:
    """Build and sign a delegated OCSP responder certificate (RFC 6960 §4.2.2.2)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} OCSP responder"[:MAX_CN_LENGTH]),
            *issuer.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[:1],
        ]
    )
    builder = (
        _end_entity(
            issuer,
            subject=subject,
            public_key=public_key,
            serial=serial,
            validity=(not_before, not_after),
            key_encipherment=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
        # RFC 6960 §4.2.2.2.1: validators need not check the responder's own status.
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )
    return issuer.signer.sign_certificate(builder)


def clamp_validity(
    *,
    now: datetime,
    not_before: datetime | None,
    not_after: datetime | None,
    lifetime: timedelta | None,
    profile: Profile,
    max_lifetime: timedelta,
    issuer_not_before: datetime,
    issuer_not_after: datetime,
    limit: str | None = None,
) -> tuple[datetime, datetime]:
    """Return (not_before, not_after) for a request, narrowing only.

    A requested notBefore may lie at most ``MAX_BACKDATE`` in the past (clock
    skew, not history); no certificate starts before its issuer does.

    Raises:
        EngineError: MALFORMED when the window is empty, wider than allowed or
            starts too far back.
    """
    if not_before is not None and not_before < now - MAX_BACKDATE:
        raise EngineError(
            ProblemKind.MALFORMED,
            f"notBefore may be at most {MAX_BACKDATE} in the past",
        )
    start = (not_before or now - timedelta(seconds=60)).replace(microsecond=0)
    start = max(start, issuer_not_before)
    if not_after is None:
        not_after = start + (lifetime or min(profile.default_lifetime, max_lifetime))
    end = not_after.replace(microsecond=0)
    if end <= start:
        raise EngineError(ProblemKind.MALFORMED, "notAfter must be later than notBefore")
    if end - start > max_lifetime:
        raise EngineError(
            ProblemKind.MALFORMED,
            f"requested lifetime {end - start} exceeds the maximum {max_lifetime} "
            f"of {limit or f'profile {profile.name}'}",
        )
    if end <= now:
        raise EngineError(ProblemKind.MALFORMED, "notAfter is in the past")
    return start, min(end, issuer_not_after)
