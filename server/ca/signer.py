"""The signing interface a CA key is used through: the key itself never leaves its backend.

A key backend (``keys.Pkcs8KeyBackend`` in process; an HSM backend through
PKCS#11) hands the engine a ``Signer``. Builders give it a cryptography builder or
the DER to be signed and get the signed object or the signature back; nothing
outside the backend holds the private key. Pure interface: no I/O.
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

__all__ = ["Signer"]


class Signer(Protocol):
    """Signs with one private key that stays inside its key backend."""

    @property
    def algorithm(self) -> bytes:
        """Return the DER AlgorithmIdentifier of the signatures ``sign`` makes."""
        ...

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        """Return the public half of the key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (a DER TBS) as X.509 builders do; return the signature value."""
        ...

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate builder."""
        ...

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL builder."""
        ...

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder
    ) -> x509.CertificateSigningRequest:
        """Sign a PKCS#10 request builder (an imported CA's request)."""
        ...
