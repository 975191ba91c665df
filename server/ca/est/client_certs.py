"""EST client-certificate authentication (RFC 7030 §3.3.2) and the TLS listener's trust list.

Owns the checks on a presented certificate: the label accepts certificates, the
certificate is within validity and allows clientAuth, it is directly issued by
the label's trust anchors (the label's CA when it names none, and always for
re-enrollment), and, for certificates privca issued, that they are known, not
revoked, issued on this label (or, outside EST, with its profile) and that
their CA may issue (active, no revoked CA above it). Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from server.ca import pipeline
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import identity
from server.ca.est.identity import ClientIdentity
from server.ca.est.labels import Labels
from server.ca.est.ports import AuthMode, EstLabel
from server.ca.ports import Clock
from server.ca.types import CA, CAKind, CAStatus, CertificateRecord, CertStatus

__all__ = ["ClientCerts"]

# privca's CA list is re-read at most this often: a disabled or revoked CA stops
# logging clients in within 5 s (the CA state itself comes from the engine, fresher).
_CA_TTL: Final = 5.0
_ISSUER_CACHE_MAX: Final = 10_000


def _directly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _allows_client_auth(cert: x509.Certificate) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in ekus


def _refuse(detail: str) -> EngineError:
    return EngineError(ProblemKind.UNAUTHORIZED, detail)


def _label_binding(record: CertificateRecord, label: EstLabel, *, renewal: bool) -> str | None:
    """Return why a certificate of the label's CA may not log in to ``label``, or None.

    A certificate issued over EST logs in to the label it was issued on only, and
    only such a certificate is renewed there; one issued outside EST (CLI) may log
    in for simpleenroll on a label of its CA and profile.
    """
    origin = identity.issued_on(record.requester)
    if origin == label.name:
        return None
    if origin is not None:
        return f"the client certificate was issued on label {origin}, not {label.name}"
    if renewal:
        return f"the certificate being renewed was not issued on label {label.name}"
    if record.profile != label.profile:
        return (
            f"the client certificate has profile {record.profile}; "
            f"label {label.name} issues {label.profile}"
        )
    return None


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
            if ca.status is CAStatus.ACTIVE:
                out[ca.cert_der or b""] = ca.certificate
        for label in await self._labels.list_all():
            for cert in self._labels.anchors(label):
                out[cert.public_bytes(serialization.Encoding.DER)] = cert
        return list(out.values())

    async def _privca_cas(self, *, fresh: bool = False) -> tuple[CA, ...]:
        """Return privca's issuing CAs with a certificate, whatever their state."""
        now = self._monotonic()
        if self._cas is None or self._cas[0] <= now or fresh:
            cas = tuple(
                ca
                for ca in await self._engine.list_cas()
                if ca.cert_der is not None and ca.kind is CAKind.GENERAL
            )
            self._cas = (now + _CA_TTL, cas)
        return self._cas[1]

    async def _privca_issuer(self, cert: x509.Certificate, der: bytes) -> CA | None:
        # The signature check is remembered per exact certificate bytes (same
        # bytes, same answer); state and revocation are still checked every time.
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

    async def _issuer(
        self, label: EstLabel, cert: x509.Certificate, der: bytes, *, for_reenroll: bool
    ) -> tuple[CA | None, bool]:
        """Return the privca CA that issued ``cert`` (None: a foreign anchor) and whether
        the label's CA did (then the certificate is bound to the label).

        Raises:
            EngineError: UNAUTHORIZED when no trust anchor of the label issued it.
        """
        anchors = self._labels.anchors(label)
        if for_reenroll or not anchors:
            label_ca = await self._engine.get_ca(label.ca)
            if label_ca.cert_der is None or not _directly_issued_by(cert, label_ca.certificate):
                what = "the certificate being renewed" if for_reenroll else "the client certificate"
                raise _refuse(f"{what} is not issued by CA {label_ca.name} of label {label.name}")
            return label_ca, True
        now = self._clock.now()
        if not any(
            _directly_issued_by(cert, anchor)
            and anchor.not_valid_before_utc <= now <= anchor.not_valid_after_utc
            for anchor in anchors
        ):
            raise _refuse(
                f"the client certificate is not issued by a trust anchor of label {label.name}"
            )
        # A privca CA configured as an anchor: its state and revocation still count.
        return await self._privca_issuer(cert, der), False

    async def authenticate(
        self, label: EstLabel, cert_der: bytes, *, for_reenroll: bool = False
    ) -> ClientIdentity:
        """Check a TLS client certificate (or one forwarded by a trusted proxy).

        The label must accept certificates (re-enrollment included); the
        certificate must be within its validity, allow clientAuth, and be directly
        issued by one of the label's trust anchors (the label's CA when it names
        none; always the label's CA for re-enrollment). When privca issued it, it
        must be known and not revoked, its CA active with no revoked CA above it,
        and, when the label's CA issued it, it must belong to this label.

        Raises:
            EngineError: UNAUTHORIZED for every refusal (the detail says why).
        """
        if AuthMode.CERT not in label.auth_modes:
            raise _refuse(f"label {label.name} does not accept client certificates")
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise _refuse("the client certificate does not parse") from exc
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise _refuse("the client certificate is expired or not yet valid")
        if not _allows_client_auth(cert):
            raise _refuse("the client certificate does not allow clientAuth (extendedKeyUsage)")
        issuer_ca, bound = await self._issuer(label, cert, cert_der, for_reenroll=for_reenroll)
        profile = None
        if issuer_ca is not None:
            # The engine's copy: the CA list above is up to _CA_TTL old, its state must not be.
            issuer_ca = await self._engine.get_ca(issuer_ca.id)
            try:
                pipeline.check_ca_state(await self._engine.lineage(issuer_ca), now)
            except EngineError as exc:
                raise _refuse(f"the client certificate's CA may not issue: {exc.detail}") from exc
            try:
                record = await self._engine.get_certificate(issuer_ca.id, cert.serial_number)
            except EngineError as exc:
                raise _refuse("the client certificate is unknown to privca") from exc
            if record.status is CertStatus.REVOKED:
                raise _refuse("the client certificate is revoked")
            if bound and (why := _label_binding(record, label, renewal=for_reenroll)) is not None:
                raise _refuse(why)
            profile = record.profile
        subject = cert.subject.rfc4514_string() or "-"
        who = f"{subject[:160]}#{cert.serial_number:X}"
        return ClientIdentity(
            principal=identity.principal(identity.CERT_KIND, label.name, who),
            certificate=cert,
            issuer_ca=issuer_ca,
            profile=profile,
        )
