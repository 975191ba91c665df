"""CA hierarchy rules: tiers, path lengths, subjects and import verification.

Pure checks over certificates; ``api.py`` calls them before anything is stored.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "MAX_TIERS",
    "ca_subject",
    "child_path_length",
    "load_pem_chain",
    "path_length_of",
    "verify_import",
]

MAX_TIERS: Final = 5


def ca_subject(name: str, organization: str | None) -> x509.Name:
    """Return the default subject for a CA named ``name``."""
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attrs)


def path_length_of(cert: x509.Certificate) -> int | None:
    """Return a CA certificate's pathLenConstraint (None: unconstrained)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def child_path_length(
    *, child_tier: int, parent_path_length: int | None, requested: int | None
) -> int:
    """Return the pathLenConstraint for a new CA at ``child_tier`` (1 = root).

    The tier caps the depth: a CA at tier t may have at most MAX_TIERS - t CAs below it.

    Raises:
        EngineError: POLICY when the tier or the parent's constraint forbids the CA.
    """
    if child_tier > MAX_TIERS:
        raise EngineError(
            ProblemKind.POLICY,
            f"a CA hierarchy has at most {MAX_TIERS} tiers (root, three intermediates, issuing); "
            f"this CA would be tier {child_tier}",
        )
    if parent_path_length is not None and parent_path_length < 1:
        raise EngineError(
            ProblemKind.POLICY,
            "the parent CA's pathLenConstraint is 0: it may issue only end-entity certificates",
        )
    allowed = MAX_TIERS - child_tier
    if parent_path_length is not None:
        allowed = min(allowed, parent_path_length - 1)
    if requested is None:
        return allowed
    if requested < 0 or requested > allowed:
        raise EngineError(
            ProblemKind.POLICY, f"pathLenConstraint {requested} not allowed here (0..{allowed})"
        )
    return requested


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Parse one or more PEM (or a single DER) certificates.

    Raises:
        EngineError: MALFORMED when nothing parses.
    """
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise EngineError(ProblemKind.MALFORMED, "not a PEM or DER certificate") from exc
    if not certs:
        raise EngineError(ProblemKind.MALFORMED, "no certificate found")
    return certs


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_signed_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EngineError(
            ProblemKind.MALFORMED,
            f"{child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}",
        ) from exc


def verify_import(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
) -> None:
    """Verify an externally signed CA certificate before activation.

    ``chain`` runs from the issuer of ``cert`` up to a self-signed root.

    Raises:
        EngineError: MALFORMED naming the first failed check (key match, CA flag,
            validity, signature, incomplete chain).
    """
    if _spki(cert.public_key()) != _spki(public_key):
        raise EngineError(ProblemKind.MALFORMED, "the certificate is not for this CA's key")
    if not chain:
        raise EngineError(
            ProblemKind.MALFORMED,
            "the issuer chain up to the root is missing (append it to the PEM)",
        )
    path = [cert, *chain]
    for i, c in enumerate(path):
        label = c.subject.rfc4514_string()
        if not _is_ca(c):
            raise EngineError(ProblemKind.MALFORMED, f"{label} is not a CA (basicConstraints cA)")
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise EngineError(ProblemKind.MALFORMED, f"{label} is not within its validity period")
        if i + 1 < len(path):
            _check_signed_by(c, path[i + 1])
            # path[i + 1] has path[0..i] below it: i + 1 CA certificates, the
            # imported one included, since it will sign leaves (RFC 5280 §4.2.1.9).
            limit = path_length_of(path[i + 1])
            if limit is not None and limit <= i:
                raise EngineError(
                    ProblemKind.MALFORMED,
                    f"{path[i + 1].subject.rfc4514_string()} pathLenConstraint forbids this chain",
                )
    root = path[-1]
    if root.issuer != root.subject:
        raise EngineError(ProblemKind.MALFORMED, "the chain does not end in a self-signed root")
    _check_signed_by(root, root)
