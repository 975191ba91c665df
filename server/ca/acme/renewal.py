"""ACME Renewal Information (RFC 9773): certificate ids and suggested renewal windows.

Owns the ARI certificate identifier (AKI keyId '.' serial) both ways: ``cert_id_of``
builds it, ``Renewal.find_certificate`` resolves it (also for newOrder's
``replaces``). Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509

from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock
from server.ca.types import CertificateRecord, CertQuery, CertStatus, Serial

__all__ = ["Renewal", "RenewalWindow", "cert_id_of"]

_ARI_RETRY_AFTER: Final = 6 * 3600
# A serial is unique per CA, not across CAs: look at a few records with that serial.
_SAME_SERIAL: Final = 10


@dataclass(frozen=True, slots=True)
class RenewalWindow:
    """ARI suggested window (RFC 9773 §4.2)."""

    start: datetime
    end: datetime
    retry_after: int


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(value: str) -> bytes:
    if "=" in value or any(c in value for c in "+/"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def cert_id_of(cert: x509.Certificate) -> str:
    """Return the ARI certificate identifier (RFC 9773 §4.1): AKI keyId '.' serial."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    der = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return f"{_b64u(aki.key_identifier or b'')}.{_b64u(der)}"


class Renewal:
    """Resolve ARI certificate ids and suggest when to renew."""

    def __init__(self, engine: CAEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def find_certificate(self, cert_id: str) -> CertificateRecord:
        """Return the certificate an ARI identifier names.

        Raises:
            EngineError: MALFORMED (not AKI.serial), NOT_FOUND.
        """
        aki_b64, dot, serial_b64 = cert_id.partition(".")
        try:
            if not dot or not aki_b64 or not serial_b64:
                raise ValueError("no dot")
            aki = _b64u_decode(aki_b64)
            serial = int.from_bytes(_b64u_decode(serial_b64), "big")
        except (ValueError, binascii.Error):
            raise EngineError(
                ProblemKind.MALFORMED, "the certificate identifier is not AKI.serial (RFC 9773)"
            ) from None
        query = CertQuery(serial=Serial(serial), limit=_SAME_SERIAL)
        for rec in await self._engine.find_certificates(query):
            ca = await self._engine.get_ca(rec.ca_id)
            ski = x509.SubjectKeyIdentifier.from_public_key(ca.certificate.public_key()).digest
            if ski == aki:
                return rec
        raise EngineError(ProblemKind.NOT_FOUND, "no certificate with that identifier")

    async def renewal_info(self, cert_id: str) -> RenewalWindow:
        """Return the suggested renewal window of a certificate (RFC 9773 §4.2).

        Two thirds into the lifetime for a sixth of it; revoked: renew now.

        Raises:
            EngineError: MALFORMED (bad identifier), NOT_FOUND.
        """
        rec = await self.find_certificate(cert_id)
        now = self._clock.now()
        if rec.status is CertStatus.REVOKED:
            return RenewalWindow(now - timedelta(hours=1), now, _ARI_RETRY_AFTER)
        lifetime = rec.not_after - rec.not_before
        start = rec.not_before + lifetime * 2 / 3
        end = start + lifetime / 6
        return RenewalWindow(
            start.replace(microsecond=0), end.replace(microsecond=0), _ARI_RETRY_AFTER
        )
