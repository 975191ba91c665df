"""EST client-certificate authentication (RFC 7030 §3.3.2) and the TLS listener's trust list.

Owns the checks on a presented certificate: validity, direct issuance by the
label's trust anchors (privca's own CAs when the label names none, and always
for re-enrollment), and, for certificates privca issued, that they are known
and not revoked. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est.identity import ClientIdentity
from server.ca.est.labels import Labels
from server.ca.est.ports import AuthMode, EstLabel
from server.ca.ports import Clock
from server.ca.types import CA, CAKind, CAStatus, CertStatus, Principal

__all__ = ["ClientCerts"]

_CA_TTL: Final = 30.0
_ISSUER_CACHE_MAX: Final = 10_000


def _directly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class ClientCerts:
    """Authenticate EST clients by the certificate they present."""

    def __init__(
        self,
        engine: CAEngine,
        labels: Labels,
        *,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._labels = labels
        self._clock = clock
        self._monotonic = monotonic
        self._cas: tuple[float, tuple[CA, ...]] | None = None
        self._issuer_of: dict[bytes, tuple[tuple[CA, ...], CA | None]] = {}

    async def tls_trust_anchors(self) -> list[x509.Certificate]:
        """Return every certificate the HTTPS listener must accept client certs from."""
        out: dict[bytes, x509.Certificate] = {}
        for ca in await self._privca_cas(fresh=True):
            out[ca.cert_der or b""] = ca.certificate
        for label in await self._labels.list_all():
            for cert in self._labels.anchors(label):
                out[cert.public_bytes(serialization.Encoding.DER)] = cert
        return list(out.values())

    async def _privca_cas(self, *, fresh: bool = False) -> tuple[CA, ...]:
        now = self._monotonic()
        if self._cas is None or self._cas[0] <= now or fresh:
            cas = tuple(
                ca
                for ca in await self._engine.list_cas()
                if ca.status is CAStatus.ACTIVE
                and ca.cert_der is not None
                and ca.kind is CAKind.GENERAL
            )
            self._cas = (now + _CA_TTL, cas)
        return self._cas[1]

    async def _privca_issuer(self, cert: x509.Certificate, der: bytes) -> CA | None:
        # The signature check is remembered per exact certificate bytes (same
        # bytes, same answer); revocation is still read from storage every time.
        cas = await self._privca_cas()
        fingerprint = hashlib.sha256(der).digest()
        cached = self._issuer_of.get(fingerprint)
        if cached is not None and cached[0] is cas:
            return cached[1]
        found = next((ca for ca in cas if _directly_issued_by(cert, ca.certificate)), None)
        if len(self._issuer_of) >= _ISSUER_CACHE_MAX:
            self._issuer_of.clear()
        self._issuer_of[fingerprint] = (cas, found)
        return found

    async def authenticate(
        self, label: EstLabel, cert_der: bytes, *, for_reenroll: bool = False
    ) -> ClientIdentity:
        """Check a TLS client certificate (or one forwarded by a trusted proxy).

        The certificate must be within its validity, directly issued by one of
        the label's trust anchors (privca's CAs when the label names none; always
        privca's CAs for re-enrollment), and, when privca issued it, known and
        not revoked.

        Raises:
            EngineError: UNAUTHORIZED for every refusal (the detail says why).
        """
        if AuthMode.CERT not in label.auth_modes and not for_reenroll:
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                f"label {label.name} does not accept client certificates",
            )
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "the client certificate does not parse"
            ) from exc
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "the client certificate is expired or not yet valid"
            )
        issuer_ca = await self._privca_issuer(cert, cert_der)
        if for_reenroll or not label.trust_anchors_pem.strip():
            trusted = issuer_ca is not None
        else:
            trusted = any(
                _directly_issued_by(cert, anchor)
                and anchor.not_valid_before_utc <= now <= anchor.not_valid_after_utc
                for anchor in self._labels.anchors(label)
            )
        if not trusted:
            where = "privca" if for_reenroll else f"label {label.name}"
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                f"the client certificate is not issued by a trust anchor of {where}",
            )
        if issuer_ca is not None:
            try:
                status = await self._engine.certificate_status(issuer_ca.id, cert.serial_number)
            except EngineError as exc:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "the client certificate is unknown to privca"
                ) from exc
            if status is CertStatus.REVOKED:
                raise EngineError(ProblemKind.UNAUTHORIZED, "the client certificate is revoked")
        subject = cert.subject.rfc4514_string() or "-"
        name = f"{label.name}/{subject[:160]}#{cert.serial_number:X}"
        return ClientIdentity(
            principal=Principal("est-cert", name), certificate=cert, issuer_ca=issuer_ca
        )
