"""ACME revocation rules (RFC 8555 §7.6): who may revoke what, and for which reasons.

Decides whether the issuing account or the certificate's own key may revoke,
which reason codes ACME accepts, and hands the revocation to ``CAEngine.revoke``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.acme import types as at
from server.ca.acme.ports import AcmeRepository
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock
from server.ca.types import CertQuery, CertStatus, Principal, RevocationReason, Serial

__all__ = ["Revocation"]

# A serial is unique per CA, not across CAs: look at a few records with that serial.
_SAME_SERIAL: Final = 10
# Reasons an ACME client may not claim: CA-level events and hold/unhold.
_REFUSED_REASONS: Final = frozenset(
    {
        RevocationReason.REMOVE_FROM_CRL,
        RevocationReason.CA_COMPROMISE,
        RevocationReason.AA_COMPROMISE,
        RevocationReason.CERTIFICATE_HOLD,
    }
)


class Revocation:
    """Apply ACME's revocation rules, then revoke through the engine."""

    def __init__(self, engine: CAEngine, repo: AcmeRepository, clock: Clock) -> None:
        self._engine = engine
        self._repo = repo
        self._clock = clock

    async def _holds_every_name(self, account: at.Account, cert: x509.Certificate) -> bool:
        """True when the account holds a valid authorization for every SAN (RFC 8555 §7.6)."""
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        idents: list[at.Identifier] = []
        for name in names:
            if isinstance(name, x509.DNSName):
                idents.append(at.Identifier(at.IdentifierType.DNS, name.value.lower()))
            elif isinstance(name, x509.IPAddress):
                idents.append(at.Identifier(at.IdentifierType.IP, str(name.value)))
            else:
                return False  # a name ACME cannot authorize
        now = self._clock.now()
        for ident in idents:
            bare = at.Identifier(ident.type, ident.value.removeprefix("*."))
            wildcard = ident.value.startswith("*.")
            if (
                await self._repo.find_valid_authz(account.id, bare, now=now, wildcard=wildcard)
                is None
            ):
                return False
        return bool(idents)

    async def revoke(
        self,
        cert_der: bytes,
        *,
        reason_code: int | None,
        account: at.Account | None = None,
        key_spki: bytes | None = None,
        source: str = "",
    ) -> None:
        """Revoke by the issuing account, an account authorized for every name in the
        certificate, or the certificate's own key (RFC 8555 §7.6).

        ``source`` (the client address) goes into the revocation's audit record.

        Raises:
            EngineError: MALFORMED (not a certificate), NOT_FOUND, UNAUTHORIZED,
                ALREADY_REVOKED, BAD_REVOCATION_REASON.
        """
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise EngineError(
                ProblemKind.MALFORMED, "certificate is not a DER certificate"
            ) from None
        try:
            reason = RevocationReason.from_code(0 if reason_code is None else reason_code)
        except ValueError:
            raise EngineError(
                ProblemKind.BAD_REVOCATION_REASON, f"unknown reason code {reason_code}"
            ) from None
        if reason in _REFUSED_REASONS:
            raise EngineError(
                ProblemKind.BAD_REVOCATION_REASON, f"reason {reason} is not accepted over ACME"
            )
        query = CertQuery(serial=Serial(cert.serial_number), limit=_SAME_SERIAL)
        recs = await self._engine.find_certificates(query)
        rec = next((r for r in recs if r.der == cert_der), None)
        if rec is None:
            raise EngineError(ProblemKind.NOT_FOUND, "this server did not issue that certificate")
        if account is not None:
            if rec.requester != f"acme:{account.id}" and not await self._holds_every_name(
                account, cert
            ):
                raise EngineError(
                    ProblemKind.UNAUTHORIZED,
                    "this account neither requested that certificate nor holds valid "
                    "authorizations for all of its names",
                )
        else:
            spki = cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if key_spki is None or spki != key_spki:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "the request is not signed by the certificate's key"
                )
        if rec.status is CertStatus.REVOKED:
            raise EngineError(ProblemKind.ALREADY_REVOKED, "the certificate is already revoked")
        principal = Principal("acme", account.id if account else "certificate-key", source=source)
        await self._engine.revoke(rec.serial, principal=principal, reason=reason, ca=rec.ca_id)
