"""EST facade: the one engine surface the EST front end (protocols/est) and the CLI call.

Owns EST labels (CA + profile + auth policy + CSR attributes), enrollment
accounts (salted PBKDF2 hashes, verified results cached briefly), client
certificate checks (trust anchors per label, expiry, revocation), the
re-enrollment identity rule (RFC 7030 §4.2.2) and manual approval
(RFC 7030 §4.2.3). Issuance itself goes through ``CAEngine``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from server.ca import issuance, keys, policy
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est.ports import (
    AuthMode,
    CsrAttr,
    CsrTemplate,
    EstLabel,
    EstOperation,
    EstRepository,
    EstUser,
    PendingEnrollment,
    PendingId,
    PendingStatus,
)
from server.ca.ports import Clock, SystemClock
from server.ca.types import (
    CA,
    AuditEvent,
    CAKind,
    CAStatus,
    CertStatus,
    KeyAlgorithm,
    Principal,
    Serial,
)

__all__ = [
    "DEFAULT_LABEL",
    "AuthMode",
    "ClientIdentity",
    "CsrAttr",
    "CsrTemplate",
    "Enrolled",
    "EnrollmentPending",
    "EstLabel",
    "EstOperation",
    "EstService",
    "EstUser",
    "PendingEnrollment",
    "PendingId",
    "PendingStatus",
    "hash_password",
    "is_valid_label_name",
    "parse_trust_anchors",
    "verify_password_hash",
]

DEFAULT_LABEL: Final = "default"
# Path segments of the operations themselves can never be label names (RFC 7030 §3.2.2).
_RESERVED: Final = frozenset(
    {"cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "fullcmc"}
)
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_USER_RE: Final = re.compile(r"^[^\x00-\x1f:]{1,128}$")
_PBKDF2_ITERATIONS: Final = 210_000
_MIN_PASSWORD: Final = 8
_LABEL_TTL: Final = 5.0
_AUTH_CACHE_TTL: Final = 60.0
_AUTH_CACHE_MAX: Final = 10_000
_CA_TTL: Final = 30.0
_ISSUING_RETRY: Final = 5
_STALE_ISSUING: Final = timedelta(minutes=10)

_OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
_OID_SECP256R1: Final = "1.2.840.10045.3.1.7"
_OID_SECP384R1: Final = "1.3.132.0.34"
_OID_ECDSA_SHA256: Final = "1.2.840.10045.4.3.2"
_OID_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
_OID_SHA256_RSA: Final = "1.2.840.113549.1.1.11"
_OID_SERIAL_NUMBER: Final = "2.5.4.5"
_OID_COMMON_NAME: Final = "2.5.4.3"
_OID_SUBJECT_ALT_NAME: Final = "2.5.29.17"


# The key a profile prefers, in order: (key type, key algorithm OID, curve OID, signature
# algorithm OID to advertise). csrattrs and its RFC 9908 template both say this one.
_KEY_HINTS: Final = (
    (KeyAlgorithm.EC_P256, _OID_EC_PUBLIC_KEY, _OID_SECP256R1, _OID_ECDSA_SHA256),
    (KeyAlgorithm.EC_P384, _OID_EC_PUBLIC_KEY, _OID_SECP384R1, None),
    (KeyAlgorithm.RSA_2048, _OID_RSA_ENCRYPTION, None, _OID_SHA256_RSA),
)


def _key_hint(
    allowed: frozenset[KeyAlgorithm],
) -> tuple[KeyAlgorithm, str, str | None, str | None] | None:
    return next((hint for hint in _KEY_HINTS if hint[0] in allowed), None)


def is_valid_label_name(name: str) -> bool:
    """Return True for a usable label name (not an operation name)."""
    return bool(_LABEL_RE.match(name)) and name not in _RESERVED


def parse_trust_anchors(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse PEM trust anchors.

    Raises:
        EngineError: MALFORMED when the PEM holds no certificate or does not parse.
    """
    if not pem.strip():
        return ()
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise EngineError(ProblemKind.MALFORMED, "trust anchors are not PEM certificates") from exc
    return tuple(certs)


def hash_password(password: str, *, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """Return a salted PBKDF2-HMAC-SHA256 hash as ``pbkdf2_sha256$iter$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(
        (
            "pbkdf2_sha256",
            str(iterations),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_password_hash(password: str, stored: str) -> bool:
    """Check a password against ``hash_password`` output in constant time."""
    try:
        scheme, iterations, salt_b64, digest_b64 = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        rounds = int(iterations)
    except ValueError:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return hmac.compare_digest(actual, expected)


_DUMMY_HASH: Final = hash_password("dummy-password-for-timing", iterations=_PBKDF2_ITERATIONS)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """An authenticated EST client: who, and the certificate it presented (if any)."""

    principal: Principal
    certificate: x509.Certificate | None = None
    # Set when the client certificate was issued by one of privca's CAs.
    issuer_ca: CA | None = None


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A certificate ready to return (with the generated key for serverkeygen)."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key_der: bytes | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentPending:
    """The enrollment waits for an operator (HTTP 202 + Retry-After)."""

    id: PendingId
    retry_after: int


def _default_label() -> EstLabel:
    return EstLabel(name=DEFAULT_LABEL, source="built-in")


def _key_fingerprint(csr: x509.CertificateSigningRequest) -> str:
    spki = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _san_set(names: Sequence[x509.GeneralName]) -> frozenset[str]:
    return frozenset(policy.san_value(n) for n in names)


def _cert_sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _pem_body_to_der(pem: bytes) -> bytes:
    lines = [ln for ln in pem.strip().splitlines() if not ln.startswith(b"-----")]
    return base64.b64decode(b"".join(lines))


def _directly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class EstService:
    """EST operations over the CA engine and the EST repository."""

    def __init__(
        self,
        engine: CAEngine,
        repo: EstRepository,
        *,
        config_labels: Mapping[str, EstLabel] | None = None,
        clock: Clock | None = None,
        retry_after: int = 60,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._config_labels = dict(config_labels or {})
        self._clock = clock or SystemClock()
        self._retry_after = retry_after
        self._monotonic = monotonic
        self._labels: dict[str, tuple[float, EstLabel | None]] = {}
        self._anchors: dict[bytes, tuple[x509.Certificate, ...]] = {}
        self._cas: tuple[float, tuple[CA, ...]] | None = None
        # Keyed by HMAC(process secret, label/user/password): never the password itself.
        self._auth_key = secrets.token_bytes(32)
        self._auth_ok: dict[bytes, float] = {}
        self._issuer_of: dict[bytes, tuple[tuple[CA, ...], CA | None]] = {}

    # ------------------------------------------------------------------ labels

    async def get_label(self, name: str | None) -> EstLabel:
        """Return the label for a path segment (None: the default label).

        Raises:
            EngineError: NOT_FOUND for an unknown label.
        """
        key = name or DEFAULT_LABEL
        configured = self._config_labels.get(key)
        if configured is not None:
            return configured
        now = self._monotonic()
        cached = self._labels.get(key)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = await self._repo.get_label(key) if is_valid_label_name(key) else None
            if len(self._labels) > 1000:
                self._labels.clear()
            self._labels[key] = (now + _LABEL_TTL, found)
        if found is None and key == DEFAULT_LABEL:
            found = _default_label()
        if found is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"unknown EST label {key!r}")
        return found

    async def list_labels(self) -> list[EstLabel]:
        """Return every label: configured, stored and the built-in default."""
        out = dict(self._config_labels)
        for label in await self._repo.list_labels():
            out.setdefault(label.name, label)
        out.setdefault(DEFAULT_LABEL, _default_label())
        return [out[k] for k in sorted(out)]

    async def check_label(self, label: EstLabel) -> None:
        """Validate a label's references (CA, profile, anchors, name).

        Raises:
            EngineError: MALFORMED, INVALID_PROFILE, NOT_FOUND (CA).
        """
        if not is_valid_label_name(label.name):
            raise EngineError(
                ProblemKind.MALFORMED,
                f"label names are 1-64 letters, digits, '.', '_' or '-' and not an "
                f"operation name: {label.name!r}",
            )
        self._engine.profile(label.profile)
        if label.ca is not None:
            await self._engine.get_ca(label.ca)
        if not label.auth_modes:
            raise EngineError(ProblemKind.MALFORMED, "a label needs at least one auth mode")
        parse_trust_anchors(label.trust_anchors_pem)

    async def add_label(self, label: EstLabel, *, actor: Principal) -> None:
        """Store a new label.

        Raises:
            EngineError: CONFLICT (exists, or defined in the config file), MALFORMED,
                INVALID_PROFILE, NOT_FOUND (CA).
        """
        await self.check_label(label)
        if label.name in self._config_labels:
            raise EngineError(
                ProblemKind.CONFLICT, f"label {label.name!r} is defined in the config file"
            )
        await self._repo.add_label(
            label,
            audit=self._audit(
                actor, "est.label-add", label.name, ca=label.ca or "", profile=label.profile
            ),
        )
        self._labels.pop(label.name, None)

    async def remove_label(self, name: str, *, actor: Principal) -> None:
        """Delete a stored label and its accounts.

        Raises:
            EngineError: NOT_FOUND.
        """
        if not await self._repo.remove_label(
            name, audit=self._audit(actor, "est.label-remove", name)
        ):
            raise EngineError(ProblemKind.NOT_FOUND, f"no stored EST label {name!r}")
        self._labels.pop(name, None)

    async def tls_trust_anchors(self) -> list[x509.Certificate]:
        """Return every certificate the HTTPS listener must accept client certs from."""
        out: dict[bytes, x509.Certificate] = {}
        for ca in await self._privca_cas(fresh=True):
            out[ca.cert_der or b""] = ca.certificate
        for label in await self.list_labels():
            for cert in self._label_anchors(label):
                out[cert.public_bytes(serialization.Encoding.DER)] = cert
        return list(out.values())

    def _label_anchors(self, label: EstLabel) -> tuple[x509.Certificate, ...]:
        cached = self._anchors.get(label.trust_anchors_pem)
        if cached is None:
            cached = parse_trust_anchors(label.trust_anchors_pem)
            self._anchors[label.trust_anchors_pem] = cached
        return cached

    # ------------------------------------------------------------------ users

    async def add_user(
        self, label: str, username: str, password: str, *, actor: Principal
    ) -> EstUser:
        """Create (or reset the password of) an enrollment account.

        Raises:
            EngineError: NOT_FOUND (label), MALFORMED (username or short password).
        """
        await self.get_label(label)
        if not _USER_RE.match(username):
            raise EngineError(ProblemKind.MALFORMED, "usernames are 1-128 chars without ':'")
        if len(password) < _MIN_PASSWORD:
            raise EngineError(
                ProblemKind.MALFORMED, f"passwords need at least {_MIN_PASSWORD} characters"
            )
        hashed = await asyncio.to_thread(hash_password, password)
        user = EstUser(
            label=label, username=username, password_hash=hashed, created_at=self._clock.now()
        )
        await self._repo.put_user(
            user, audit=self._audit(actor, "est.user-add", f"{label}/{username}")
        )
        return user

    async def remove_user(self, label: str, username: str, *, actor: Principal) -> None:
        """Delete an enrollment account.

        Raises:
            EngineError: NOT_FOUND.
        """
        if not await self._repo.remove_user(
            label, username, audit=self._audit(actor, "est.user-remove", f"{label}/{username}")
        ):
            raise EngineError(ProblemKind.NOT_FOUND, f"no EST user {username!r} on {label!r}")

    async def list_users(self, label: str | None = None) -> Sequence[EstUser]:
        """Return enrollment accounts (hashes included; never printed by the CLI)."""
        return await self._repo.list_users(label)

    # ------------------------------------------------------------------ authentication

    async def authenticate_password(
        self, label: EstLabel, username: str, password: str
    ) -> ClientIdentity | None:
        """Check HTTP Basic credentials for a label; None when they are wrong.

        A successful check is remembered for a minute (keyed by an HMAC under a
        per-process secret) so PBKDF2 does not dominate enrollment throughput.

        Raises:
            EngineError: UNAUTHORIZED when the label does not allow Basic auth.
        """
        if AuthMode.BASIC not in label.auth_modes:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, f"label {label.name} does not accept passwords"
            )
        principal = Principal("est-user", f"{label.name}/{username}")
        token = hmac.new(
            self._auth_key,
            b"\x00".join((label.name.encode(), username.encode(), password.encode())),
            hashlib.sha256,
        ).digest()
        now = self._monotonic()
        expiry = self._auth_ok.get(token)
        if expiry is not None and expiry > now:
            return ClientIdentity(principal=principal)
        user = await self._repo.get_user(label.name, username)
        stored = user.password_hash if user is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(verify_password_hash, password, stored)
        if not ok or user is None:
            return None
        if len(self._auth_ok) >= _AUTH_CACHE_MAX:
            self._auth_ok = {k: v for k, v in self._auth_ok.items() if v > now}
            if len(self._auth_ok) >= _AUTH_CACHE_MAX:
                self._auth_ok.clear()
        self._auth_ok[token] = now + _AUTH_CACHE_TTL
        return ClientIdentity(principal=principal)

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
        if len(self._issuer_of) >= _AUTH_CACHE_MAX:
            self._issuer_of.clear()
        self._issuer_of[fingerprint] = (cas, found)
        return found

    async def authenticate_certificate(
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
                for anchor in self._label_anchors(label)
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

    # ------------------------------------------------------------------ distribution

    async def ca_certs(self, label: EstLabel) -> tuple[x509.Certificate, ...]:
        """Return the label's CA certificate and its issuers up to the root (RFC 7030 §4.1).

        Raises:
            EngineError: NOT_FOUND (CA).
        """
        ca = await self._engine.get_ca(label.ca)
        return await self._engine.chain_of(ca)

    def csr_attributes(self, label: EstLabel) -> tuple[CsrAttr, ...]:
        """Return the CSR attributes to advertise (RFC 7030 §4.5).

        Configured attributes win; otherwise they follow the profile: the
        preferred key type and signature algorithm, plus serialNumber for
        device profiles that keep the subject.
        """
        if label.csrattrs is not None:
            return label.csrattrs
        prof = self._engine.profile(label.profile)
        out: list[CsrAttr] = []
        hint = _key_hint(prof.allowed_key_algorithms)
        if hint is not None:
            _, algorithm, curve, signature = hint
            out.append(CsrAttr(algorithm, (curve,) if curve else ()))
            if signature is not None:
                out.append(CsrAttr(signature))
        if prof.keep_subject:
            out.append(CsrAttr(_OID_SERIAL_NUMBER))
        return tuple(out)

    def csr_template(self, label: EstLabel) -> CsrTemplate | None:
        """Return the RFC 9908 request template of the label's profile, or None.

        It says what ``csr_attributes`` says, as a template: the subject's
        attribute types (values for the device to fill in) for profiles that keep
        the subject, the preferred key type, and subjectAltName for profiles that
        require names. None when the label's attributes are configured by hand: a
        template-aware client would follow the template instead of them.
        """
        if label.csrattrs is not None:
            return None
        prof = self._engine.profile(label.profile)
        hint = _key_hint(prof.allowed_key_algorithms)
        return CsrTemplate(
            subject_types=(_OID_COMMON_NAME, _OID_SERIAL_NUMBER) if prof.keep_subject else (),
            key_algorithm=hint[1] if hint else None,
            key_curve=hint[2] if hint else None,
            extensions=(_OID_SUBJECT_ALT_NAME,) if prof.require_san else (),
        )

    # ------------------------------------------------------------------ enrollment

    def parse_csr(self, der: bytes) -> x509.CertificateSigningRequest:
        """Parse a DER PKCS#10 request and verify its signature.

        Raises:
            EngineError: BAD_CSR, BAD_PUBLIC_KEY.
        """
        if not der or der[0] != 0x30:
            raise EngineError(ProblemKind.BAD_CSR, "the body is not a DER PKCS#10 request")
        return issuance.load_csr(der)

    async def _precheck(self, label: EstLabel, csr: x509.CertificateSigningRequest) -> None:
        """Run the engine's request checks without issuing (before holding for approval)."""
        prof = self._engine.profile(label.profile)
        alg = keys.algorithm_of(csr.public_key())
        if alg not in prof.allowed_key_algorithms:
            raise EngineError(
                ProblemKind.BAD_PUBLIC_KEY, f"profile {prof.name} does not allow {alg} keys"
            )
        ca = await self._engine.get_ca(label.ca)
        if ca.status is not CAStatus.ACTIVE:
            raise EngineError(ProblemKind.POLICY, f"CA {ca.name} is not active")
        names = issuance.requested_names(csr)
        policy.check_names(
            names,
            profile=prof,
            dns_suffixes=ca.allowed_dns_suffixes,
            ip_networks=ca.allowed_ip_networks,
        )
        if len(issuance.leaf_subject(prof, csr.subject, names)) == 0 and not names:
            raise EngineError(ProblemKind.BAD_CSR, "the request names no subject and no SAN")

    def _check_reenroll(
        self, label: EstLabel, csr: x509.CertificateSigningRequest, client: ClientIdentity
    ) -> None:
        """RFC 7030 §4.2.2: subject and SAN must equal the certificate being renewed."""
        current = client.certificate
        if current is None or client.issuer_ca is None:
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                "simplereenroll needs a valid client certificate issued by privca",
            )
        if label.allow_subject_change:
            return
        self._check_same_identity(csr, client, "the certificate being renewed (RFC 7030 4.2.2)")

    @staticmethod
    def _check_same_identity(
        csr: x509.CertificateSigningRequest, client: ClientIdentity, what: str
    ) -> None:
        current = client.certificate
        if current is None:
            raise EngineError(ProblemKind.UNAUTHORIZED, "no client certificate to compare with")
        if csr.subject != current.subject:
            raise EngineError(ProblemKind.UNAUTHORIZED, f"the CSR subject differs from {what}")
        if _san_set(issuance.requested_names(csr)) != _san_set(_cert_sans(current)):
            raise EngineError(
                ProblemKind.UNAUTHORIZED, f"the CSR subjectAltName differs from {what}"
            )

    async def enroll(
        self,
        label: EstLabel,
        csr: x509.CertificateSigningRequest,
        *,
        client: ClientIdentity,
        operation: EstOperation,
    ) -> Enrolled | EnrollmentPending:
        """Issue for a verified CSR (simpleenroll, simplereenroll, serverkeygen).

        With manual approval the request is held (``EnrollmentPending``) until an
        operator approves it; the client's retry with the same key then gets the
        certificate.

        Raises:
            EngineError: BAD_CSR, BAD_PUBLIC_KEY, REJECTED_IDENTIFIER, UNAUTHORIZED
                (re-enrollment identity, rejected by the operator), INVALID_PROFILE,
                NOT_FOUND, POLICY.
        """
        if operation is EstOperation.REENROLL:
            self._check_reenroll(label, csr, client)
        elif client.issuer_ca is not None and not label.allow_subject_change:
            # A device authenticated by its privca certificate asks for that identity
            # only: one device must not obtain certificates naming another.
            self._check_same_identity(csr, client, "the authenticating certificate")
        if not label.approval_required:
            return await self._issue(label, csr, client=client, operation=operation)
        await self._precheck(label, csr)
        fingerprint = _key_fingerprint(csr)
        requester = str(client.principal)[:255]
        existing = await self._repo.find_pending(label.name, requester, fingerprint)
        if existing is not None and existing.operation is operation:
            outcome = await self._resume(label, csr, client, existing)
            if outcome is not None:
                return outcome
        pending = PendingEnrollment(
            id=PendingId(secrets.token_hex(8)),
            label=label.name,
            operation=operation,
            requester=requester,
            key_fingerprint=fingerprint,
            subject=csr.subject.rfc4514_string()[:1000],
            csr_der=csr.public_bytes(serialization.Encoding.DER),
            status=PendingStatus.PENDING,
            created_at=self._clock.now(),
        )
        await self._repo.add_pending(pending)
        return EnrollmentPending(id=pending.id, retry_after=self._retry_after)

    async def _resume(
        self,
        label: EstLabel,
        csr: x509.CertificateSigningRequest,
        client: ClientIdentity,
        existing: PendingEnrollment,
    ) -> Enrolled | EnrollmentPending | None:
        status = existing.status
        if status is PendingStatus.PENDING:
            return EnrollmentPending(id=existing.id, retry_after=self._retry_after)
        if status is PendingStatus.ISSUING:
            since = existing.decided_at or existing.created_at
            if self._clock.now() - since < _STALE_ISSUING:
                return EnrollmentPending(id=existing.id, retry_after=_ISSUING_RETRY)
            # A process died while issuing: hand the approval back so this retry issues.
            await self._repo.transition_pending(
                existing.id,
                from_status=PendingStatus.ISSUING,
                to_status=PendingStatus.APPROVED,
                at=self._clock.now(),
            )
            status = PendingStatus.APPROVED
        if status is PendingStatus.REJECTED:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "an operator rejected this enrollment request"
            )
        if status is PendingStatus.ISSUED:
            if existing.operation is EstOperation.SERVERKEYGEN or existing.serial is None:
                return None  # the generated key cannot be handed out twice: a new request
            # The device retried after a lost response: hand back the same certificate,
            # unless it has since expired or been revoked (then this is a new request).
            record = await self._engine.get_certificate(existing.ca_id, existing.serial)
            if record.status is CertStatus.REVOKED or record.not_after <= self._clock.now():
                return None
            ca = await self._engine.get_ca(record.ca_id)
            return Enrolled(
                certificate=x509.load_der_x509_certificate(record.der),
                chain=await self._engine.chain_of(ca),
            )
        now = self._clock.now()
        if not await self._repo.transition_pending(
            existing.id,
            from_status=PendingStatus.APPROVED,
            to_status=PendingStatus.ISSUING,
            at=now,
        ):
            return EnrollmentPending(id=existing.id, retry_after=_ISSUING_RETRY)
        try:
            result = await self._issue(label, csr, client=client, operation=existing.operation)
        except BaseException:
            await self._repo.transition_pending(
                existing.id,
                from_status=PendingStatus.ISSUING,
                to_status=PendingStatus.APPROVED,
                at=now,
            )
            raise
        await self._repo.transition_pending(
            existing.id,
            from_status=PendingStatus.ISSUING,
            to_status=PendingStatus.ISSUED,
            at=now,
            ca_id=(await self._engine.get_ca(label.ca)).id,
            serial=Serial(result.certificate.serial_number),
        )
        return result

    async def _issue(
        self,
        label: EstLabel,
        csr: x509.CertificateSigningRequest,
        *,
        client: ClientIdentity,
        operation: EstOperation,
    ) -> Enrolled:
        if operation is EstOperation.SERVERKEYGEN:
            # The generated key follows the CSR's key type and size (EC P-256 -> EC P-256).
            alg = keys.algorithm_of(csr.public_key())
            generated = await self._engine.issue_with_generated_key(
                principal=client.principal,
                profile=label.profile,
                key_algorithm=alg,
                subject=csr.subject,
                names=issuance.requested_names(csr),
                ca=label.ca,
            )
            return Enrolled(
                certificate=generated.certificate,
                chain=generated.chain,
                private_key_der=_pem_body_to_der(generated.private_key_pem or b""),
            )
        issued = await self._engine.issue(
            csr, principal=client.principal, profile=label.profile, ca=label.ca
        )
        return Enrolled(certificate=issued.certificate, chain=issued.chain)

    # ------------------------------------------------------------------ approvals

    async def list_pending(
        self, status: PendingStatus | None = PendingStatus.PENDING
    ) -> Sequence[PendingEnrollment]:
        """Return held enrollments (default: those waiting for a decision)."""
        return await self._repo.list_pending(status)

    async def decide(self, pending_id: str, *, approve: bool, actor: Principal) -> None:
        """Approve or reject a held enrollment.

        Raises:
            EngineError: NOT_FOUND, CONFLICT (already decided).
        """
        found = await self._repo.get_pending(PendingId(pending_id))
        if found is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"no pending EST enrollment {pending_id!r}")
        target = PendingStatus.APPROVED if approve else PendingStatus.REJECTED
        now = self._clock.now()
        action = "est.approve" if approve else "est.reject"
        if not await self._repo.transition_pending(
            found.id,
            from_status=PendingStatus.PENDING,
            to_status=target,
            at=now,
            by=str(actor),
            audit=self._audit(actor, action, found.id, label=found.label, subject=found.subject),
        ):
            raise EngineError(
                ProblemKind.CONFLICT, f"enrollment {pending_id} is {found.status}, not pending"
            )

    # ------------------------------------------------------------------ helpers

    def _audit(self, actor: Principal, action: str, target: str, **detail: str) -> AuditEvent:
        return AuditEvent(
            at=self._clock.now(), actor=str(actor), action=action, target=target, detail=detail
        )
