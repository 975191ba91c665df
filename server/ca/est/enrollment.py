"""EST enrollment (RFC 7030 §4.2): simpleenroll, simplereenroll, serverkeygen, manual approval.

Owns CSR parsing, the identity rules (a re-enrollment keeps the renewed
certificate's subject and SAN, RFC 7030 §4.2.2; a device logged in with its
privca certificate asks for that identity only), holding requests for an
operator (RFC 7030 §4.2.3) and resuming them on the client's retry. Issuance
itself goes through ``CAEngine``. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import grants, issuance, keys, policy, profiles
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import labels
from server.ca.est.identity import ClientIdentity
from server.ca.est.ports import (
    EstLabel,
    EstOperation,
    EstRepository,
    PendingEnrollment,
    PendingId,
    PendingStatus,
)
from server.ca.ports import Clock
from server.ca.types import AuditEvent, CertStatus, Principal, Serial

__all__ = ["Enrolled", "EnrollmentPending", "Enrollments", "parse_csr"]

_log = logging.getLogger(__name__)

_ISSUING_RETRY: Final = 5
_STALE_ISSUING: Final = timedelta(minutes=10)


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


def parse_csr(der: bytes) -> x509.CertificateSigningRequest:
    """Parse a DER PKCS#10 request and verify its signature.

    Raises:
        EngineError: BAD_CSR, BAD_PUBLIC_KEY.
    """
    if not der or der[0] != 0x30:
        raise EngineError(ProblemKind.BAD_CSR, "the body is not a DER PKCS#10 request")
    return issuance.load_csr(der)


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


def _identity_change(
    csr: x509.CertificateSigningRequest, current: x509.Certificate, profile: profiles.Profile
) -> str | None:
    """Return what the CSR changes from ``current``'s identity (subject, SAN), or None.

    The subject compared is the one the profile would issue (profiles that derive
    the subject from the first name ignore the CSR's).
    """
    names = issuance.requested_names(csr)
    if csr.subject != current.subject and (
        issuance.leaf_subject(profile, csr.subject, names) != current.subject
    ):
        return "subject"
    if _san_set(names) != _san_set(_cert_sans(current)):
        return "subjectAltName"
    return None


def _changes_identity(
    label: EstLabel,
    csr: x509.CertificateSigningRequest,
    client: ClientIdentity,
    operation: EstOperation,
    profile: profiles.Profile,
) -> bool:
    """Refuse or flag a request naming another identity than the client's privca certificate.

    RFC 7030 §4.2.2: a re-enrollment keeps the renewed certificate's subject and
    SAN; a device logged in with its privca certificate asks for that identity
    only. On a label with ``allow_subject_change`` the change is allowed but goes
    to an operator (True: hold for approval), never straight through.

    Raises:
        EngineError: UNAUTHORIZED for a change the label does not allow, or a
            re-enrollment without a privca certificate of the label.
    """
    current = client.certificate
    if operation is EstOperation.REENROLL:
        if current is None or client.issuer_ca is None:
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                "simplereenroll needs a valid client certificate issued by privca",
            )
        what = "the certificate being renewed (RFC 7030 4.2.2)"
    elif current is not None and client.issuer_ca is not None:
        what = "the authenticating certificate"
    else:
        return False
    changed = _identity_change(csr, current, profile)
    if changed is None:
        return False
    if not label.allow_subject_change:
        raise EngineError(ProblemKind.UNAUTHORIZED, f"the CSR {changed} differs from {what}")
    return True


def _profile_for(label: EstLabel, client: ClientIdentity, operation: EstOperation) -> str:
    """Return the profile to issue: a renewal keeps the renewed certificate's profile."""
    if operation is EstOperation.REENROLL and client.profile is not None:
        return client.profile
    return label.profile


def label_grant(label: EstLabel, ca_name: str) -> grants.Grant:
    """Return what a label lets its clients put in a certificate.

    The label's CA (``ca_name``: the label's CA, or the default CA, by name) and
    profile, and the label's name policy. A label without policy grants
    ``grants.DEVICE_IDENTITY``: a subject name, no subjectAltName of any type.
    """
    return grants.Grant(
        cas=frozenset({ca_name}),
        profiles=frozenset({label.profile}),
        dns_suffixes=label.dns_suffixes,
        allow_wildcard=label.allow_wildcard,
        ip_ranges=label.ip_ranges,
        email_domains=label.email_domains,
        uri_patterns=label.uri_patterns,
        subject_patterns=label.subject_patterns,
        max_lifetime=None if label.max_days is None else timedelta(days=label.max_days),
    )


class Enrollments:
    """Issue for EST clients, holding requests for an operator where the label says so."""

    def __init__(
        self, engine: CAEngine, repo: EstRepository, *, clock: Clock, retry_after: int
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._clock = clock
        self._retry_after = retry_after

    async def _grant(self, label: EstLabel, client: ClientIdentity) -> grants.Grant:
        grant = label_grant(label, (await self._engine.get_ca(label.ca)).name)
        return labels.narrow_for_account(
            grant,
            dns_suffixes=client.dns_suffixes,
            subject_patterns=client.subject_patterns,
            max_days=client.max_days,
        )

    async def _precheck(
        self,
        label: EstLabel,
        csr: x509.CertificateSigningRequest,
        client: ClientIdentity,
        operation: EstOperation,
    ) -> None:
        """Run the issuance pipeline's checks without issuing (before holding for approval)."""
        await self._engine.check_request(
            client.principal,
            await self._grant(label, client),
            ca=label.ca,
            profile=_profile_for(label, client, operation),
            names=issuance.requested_names(csr),
            subject=csr.subject,
            public_key=csr.public_key(),
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

        With manual approval (the label's, or a subject/SAN change on a label with
        ``allow_subject_change``) the request is held (``EnrollmentPending``) until
        an operator approves it; the client's retry with the same key then gets the
        certificate. A re-enrollment keeps the renewed certificate's profile.

        Raises:
            EngineError: BAD_CSR, BAD_PUBLIC_KEY, REJECTED_IDENTIFIER, UNAUTHORIZED
                (re-enrollment identity, rejected by the operator), INVALID_PROFILE,
                NOT_FOUND, POLICY.
        """
        profile = self._engine.profile(_profile_for(label, client, operation))
        changed = _changes_identity(label, csr, client, operation, profile)
        if not label.approval_required and not changed:
            return await self._issue(label, csr, client=client, operation=operation)
        await self._precheck(label, csr, client, operation)
        if changed:
            _log.info(
                "EST %s on label %s by %s changes the identity: held for approval",
                operation,
                label.name,
                client.principal,
            )
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
        await self._repo.add_pending(
            pending,
            audit=AuditEvent(
                at=pending.created_at,
                actor=requester,
                action="est.enroll-hold",
                target=pending.id,
                detail={
                    "label": label.name,
                    "operation": str(operation),
                    "subject": pending.subject,
                },
                source=client.principal.source,
            ),
        )
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
        grant = await self._grant(label, client)
        profile = _profile_for(label, client, operation)
        if operation is EstOperation.SERVERKEYGEN:
            # The generated key follows the CSR's key type and size (EC P-256 -> EC P-256).
            alg = keys.algorithm_of(csr.public_key())
            generated = await self._engine.issue_with_generated_key(
                principal=client.principal,
                grant=grant,
                profile=profile,
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
            csr,
            principal=client.principal,
            grant=grant,
            profile=profile,
            ca=label.ca,
        )
        return Enrolled(certificate=issued.certificate, chain=issued.chain)

    async def list_pending(
        self, status: PendingStatus | None = PendingStatus.PENDING
    ) -> Sequence[PendingEnrollment]:
        """Return held enrollments (default: those waiting for a decision)."""
        return await self._repo.list_pending(status)

    async def get_pending(self, pending_id: str) -> PendingEnrollment:
        """Return one held enrollment.

        Raises:
            EngineError: NOT_FOUND.
        """
        found = await self._repo.get_pending(PendingId(pending_id))
        if found is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"no pending EST enrollment {pending_id!r}")
        return found

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
        audit = AuditEvent(
            at=now,
            actor=str(actor),
            source=actor.source,
            action="est.approve" if approve else "est.reject",
            target=found.id,
            detail={"label": found.label, "subject": found.subject},
        )
        if not await self._repo.transition_pending(
            found.id,
            from_status=PendingStatus.PENDING,
            to_status=target,
            at=now,
            by=str(actor),
            audit=audit,
        ):
            raise EngineError(
                ProblemKind.CONFLICT, f"enrollment {pending_id} is {found.status}, not pending"
            )
