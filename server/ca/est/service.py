"""``EstService``: the EST engine surface, composed of one part per concept.

Labels (``labels.py``), accounts and password login (``users.py``),
client-certificate login (``client_certs.py``), CSR attributes
(``csrattrs.py``) and enrollment with manual approval (``enrollment.py``)
share one repository, clock and CA engine; this class wires them and adds
nothing of its own beyond CA certificate distribution. Must not import
aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from cryptography import x509

from server.ca.api import CAEngine
from server.ca.est import csrattrs, enrollment
from server.ca.est.client_certs import ClientCerts
from server.ca.est.enrollment import Enrolled, EnrollmentPending, Enrollments
from server.ca.est.identity import ClientIdentity
from server.ca.est.labels import Labels
from server.ca.est.logins import LoginLimits
from server.ca.est.ports import (
    CsrAttr,
    CsrTemplate,
    EstLabel,
    EstOperation,
    EstRepository,
    EstUser,
    PendingEnrollment,
    PendingStatus,
)
from server.ca.est.users import Users
from server.ca.ports import Clock, SystemClock
from server.ca.types import Principal

__all__ = ["EstService"]


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
        login_limits: LoginLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        clock = clock or SystemClock()
        self._engine = engine
        self._labels = Labels(
            engine, repo, config_labels=config_labels or {}, clock=clock, monotonic=monotonic
        )
        self._users = Users(
            self._labels, repo, clock=clock, limits=login_limits, monotonic=monotonic
        )
        self._certs = ClientCerts(engine, self._labels, clock=clock, monotonic=monotonic)
        self._enrollments = Enrollments(engine, repo, clock=clock, retry_after=retry_after)

    # ------------------------------------------------------------------ labels (labels.py)

    async def get_label(self, name: str | None) -> EstLabel:
        """Return the label for a path segment (None: the default label); NOT_FOUND if unknown."""
        return await self._labels.get(name)

    async def list_labels(self) -> list[EstLabel]:
        """Return every label: configured, stored and the built-in default."""
        return await self._labels.list_all()

    async def check_label(self, label: EstLabel) -> None:
        """Validate a label; raises MALFORMED, INVALID_PROFILE, NOT_FOUND (CA)."""
        await self._labels.check(label)

    async def add_label(self, label: EstLabel, *, actor: Principal) -> None:
        """Store a new label; raises CONFLICT, MALFORMED, INVALID_PROFILE, NOT_FOUND (CA)."""
        await self._labels.add(label, actor=actor)

    async def remove_label(self, name: str, *, actor: Principal) -> None:
        """Delete a stored label and its accounts; raises NOT_FOUND."""
        await self._labels.remove(name, actor=actor)

    # ------------------------------------------------------------------ accounts (users.py)

    async def add_user(
        self,
        label: str,
        username: str,
        password: str,
        *,
        actor: Principal,
        dns_suffixes: tuple[str, ...] | None = None,
        subject_patterns: tuple[str, ...] | None = None,
        max_days: int | None = None,
    ) -> EstUser:
        """Create (or reset) an account, optionally narrower than its label.

        Raises NOT_FOUND (label), MALFORMED.
        """
        return await self._users.add(
            label,
            username,
            password,
            actor=actor,
            dns_suffixes=dns_suffixes,
            subject_patterns=subject_patterns,
            max_days=max_days,
        )

    async def remove_user(self, label: str, username: str, *, actor: Principal) -> None:
        """Delete an enrollment account; raises NOT_FOUND."""
        await self._users.remove(label, username, actor=actor)

    async def list_users(self, label: str | None = None) -> Sequence[EstUser]:
        """Return enrollment accounts (hashes included; never printed by the CLI)."""
        return await self._users.list_all(label)

    async def authenticate_password(
        self, label: EstLabel, username: str, password: str, *, client: str
    ) -> ClientIdentity | None:
        """Check HTTP Basic credentials from address ``client`` (None when wrong).

        Raises UNAUTHORIZED if the label refuses passwords, RATE_LIMITED when the
        address or account is out of failed logins, UNAVAILABLE when PBKDF2 is saturated.
        """
        return await self._users.authenticate(label, username, password, client=client)

    # ------------------------------------------------------------------ client certificates

    async def authenticate_certificate(
        self, label: EstLabel, cert_der: bytes, *, for_reenroll: bool = False
    ) -> ClientIdentity:
        """Check a TLS client certificate; UNAUTHORIZED for every refusal."""
        return await self._certs.authenticate(label, cert_der, for_reenroll=for_reenroll)

    async def tls_trust_anchors(self) -> list[x509.Certificate]:
        """Return every certificate the HTTPS listener must accept client certs from."""
        return await self._certs.tls_trust_anchors()

    # ------------------------------------------------------------------ distribution

    async def ca_certs(self, label: EstLabel) -> tuple[x509.Certificate, ...]:
        """Return the label's CA certificate and its issuers up to the root (RFC 7030 §4.1).

        Raises:
            EngineError: NOT_FOUND (CA).
        """
        ca = await self._engine.get_ca(label.ca)
        return await self._engine.chain_of(ca)

    def csr_attributes(self, label: EstLabel) -> tuple[CsrAttr, ...]:
        """Return the CSR attributes to advertise (RFC 7030 §4.5); INVALID_PROFILE if unknown."""
        return csrattrs.csr_attributes(label, profile_of=self._engine.profile)

    def csr_template(self, label: EstLabel) -> CsrTemplate | None:
        """Return the RFC 9908 request template of the label's profile, or None."""
        return csrattrs.csr_template(label, profile_of=self._engine.profile)

    # ------------------------------------------------------------------ enrollment

    def parse_csr(self, der: bytes) -> x509.CertificateSigningRequest:
        """Parse a DER PKCS#10 request and verify its signature; BAD_CSR, BAD_PUBLIC_KEY."""
        return enrollment.parse_csr(der)

    async def enroll(
        self,
        label: EstLabel,
        csr: x509.CertificateSigningRequest,
        *,
        client: ClientIdentity,
        operation: EstOperation,
    ) -> Enrolled | EnrollmentPending:
        """Issue for a verified CSR, or hold it for approval (see ``Enrollments.enroll``)."""
        return await self._enrollments.enroll(label, csr, client=client, operation=operation)

    async def list_pending(
        self, status: PendingStatus | None = PendingStatus.PENDING
    ) -> Sequence[PendingEnrollment]:
        """Return held enrollments (default: those waiting for a decision)."""
        return await self._enrollments.list_pending(status)

    async def get_pending(self, pending_id: str) -> PendingEnrollment:
        """Return one held enrollment; raises NOT_FOUND."""
        return await self._enrollments.get_pending(pending_id)

    async def decide(self, pending_id: str, *, approve: bool, actor: Principal) -> None:
        """Approve or reject a held enrollment; raises NOT_FOUND, CONFLICT."""
        await self._enrollments.decide(pending_id, approve=approve, actor=actor)
