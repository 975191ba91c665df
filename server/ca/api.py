"""CAEngine: the one surface protocol front ends and the CLI call.

Issuance, revocation, inventory and audit over the storage port; stores the CAs
that ``hierarchy.py`` (roots, subordinates, imports) and the Matter service build;
owns the decrypted-key cache. OCSP and CRLs are the status service's
(``server/ca/status/``). Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import audit as trail
from server.ca import (
    custody,
    grants,
    hierarchy,
    issuance,
    keys,
    lifecycle,
    pipeline,
    policy,
    profiles,
)
from server.ca.errors import CAChangedError, EngineError, ProblemKind, StorageUnavailableError
from server.ca.ports import Clock, Repository, SerialConflictError, SystemClock, random_serial
from server.ca.signer import Signer
from server.ca.types import (
    CA,
    AuditEvent,
    AuditPage,
    AuditQuery,
    CAId,
    CAKind,
    CAMode,
    CAStatus,
    CertificateInsert,
    CertificatePage,
    CertificateRecord,
    CertificateRevocation,
    CertQuery,
    CertStatus,
    IssuedCertificate,
    KeyAlgorithm,
    KeyHandle,
    Principal,
    RevocationReason,
    Serial,
)

if TYPE_CHECKING:
    from server.ca.matter.api import MatterRequest

__all__ = ["CAEngine", "EngineSettings", "StatusListener"]

_log = logging.getLogger(__name__)


class StatusListener(Protocol):
    """Told about each stored issuance and revocation (revocation services hook in here)."""

    async def issued(self, record: CertificateRecord) -> None:
        """Handle a certificate that was just stored."""
        ...

    async def revoked(self, record: CertificateRecord) -> None:
        """Handle a certificate that was just revoked."""
        ...


_SERIAL_ATTEMPTS: Final = 5
OCSP_SIGNER_PROFILE: Final = "ocsp-signer"
_OCSP: Final = Principal("system", "ocsp")
_KEYS: Final = Principal("system", "keys")
# Who may have the admin CA (kind ADMIN) sign: the CLI operator, privca itself, and
# admin API principals; never an ACME account or EST client whatever its grant says.
_ADMIN_CA_USERS: Final = frozenset({"operator", "system", "admin"})
# Audit records read per query by ``verify_audit`` and ``audit_records``.
_AUDIT_PAGE: Final = 1000
# A CA's state is re-read at most this often, so every node sharing the database
# sees a disable or revocation within the promised 5 seconds.
STATE_TTL: Final = 2.0
# Matter leaf profiles: issued by server/ca/matter/service.py on CAs of kind MATTER_PAI
# (DAC) and MATTER_ICAC/MATTER_RCAC (NOC); the Matter profiles fix everything else.
_MATTER_PROFILES: Final = {
    p.name: p
    for p in (
        profiles.Profile(
            name="matter-dac",
            description="Matter Device Attestation Certificate (issued by a PAI)",
            extended_key_usages=(),
            allowed_san_types=frozenset(),
            max_lifetime=timedelta(days=3_000_000),
            default_lifetime=timedelta(days=3_000_000),
            allowed_key_algorithms=frozenset({KeyAlgorithm.EC_P256}),
            keep_subject=True,
            require_san=False,
        ),
        profiles.Profile(
            name="matter-noc",
            description="Matter Node Operational Certificate (issued by an ICAC or RCAC)",
            extended_key_usages=(),
            allowed_san_types=frozenset(),
            max_lifetime=timedelta(days=3_000_000),
            default_lifetime=timedelta(days=365),
            allowed_key_algorithms=frozenset({KeyAlgorithm.EC_P256}),
            keep_subject=True,
            require_san=False,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Engine configuration, validated by ``server.config`` before it gets here."""

    http_base_url: str = "http://127.0.0.1:8080"
    organization: str | None = "privca"
    default_ca: str | None = None
    root_lifetime: timedelta = timedelta(days=3650)
    sub_lifetime: timedelta = timedelta(days=1825)
    profiles: dict[str, profiles.Profile] = field(
        default_factory=lambda: dict(profiles.BUILTIN_PROFILES)
    )


class CAEngine:
    """Private CA operations: hierarchy, issuance, revocation, inventory, audit."""

    def __init__(
        self,
        repo: Repository,
        key_backend: keys.KeyBackend,
        *,
        settings: EngineSettings | None = None,
        clock: Clock | None = None,
        serials: Callable[[], Serial] = random_serial,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._keys = key_backend
        self.settings = settings or EngineSettings()
        self._clock = clock or SystemClock()
        self._serials = serials
        self._monotonic = monotonic
        self._issuers: dict[CAId, tuple[bytes, issuance.Issuer]] = {}
        self._chains: dict[CAId, tuple[CA, tuple[x509.Certificate, ...]]] = {}
        self._constraints: dict[CAId, tuple[CA, tuple[x509.NameConstraints, ...]]] = {}
        self._cas: dict[str, tuple[float, CA]] = {}
        self._listeners: list[StatusListener] = []
        # Set only by ``privca ca sign-offline`` (and CLI steps that sign under an offline
        # CA): never in a serving process, so an offline CA's key is never loaded there.
        self._ceremony = False

    # ------------------------------------------------------------------ helpers

    def _now(self) -> datetime:
        return self._clock.now()

    def _audit(self, actor: Principal, action: str, target: str, **detail: str) -> AuditEvent:
        return AuditEvent(
            at=self._now(),
            actor=str(actor),
            action=action,
            target=target,
            detail=detail,
            source=actor.source,
        )

    def urls_for(self, ca: CA) -> issuance.RevocationUrls:
        """Return the CRL, OCSP and caIssuers URLs named in the children of ``ca``."""
        base = self.settings.http_base_url.rstrip("/")
        return issuance.RevocationUrls(
            crl=f"{base}/crl/{ca.id}.crl",
            ocsp=f"{base}/ocsp",
            ca_issuers=f"{base}/ca/{ca.id}.cer",
        )

    def _child_urls(self, ca: CA) -> issuance.RevocationUrls:
        urls = self.urls_for(ca)
        if ca.mode is CAMode.SHORT_LIVED and not ca.publish_revocation:
            # Short-lived leaves expire instead of being revoked: no CDP/OCSP by default.
            return issuance.RevocationUrls(crl=None, ocsp=None, ca_issuers=urls.ca_issuers)
        return urls

    def crl_scope(self, ca: CA) -> str | None:
        """Return the IssuingDistributionPoint URL, or None for a CRL without IDP.

        OpenSSL matches an IDP against the certificate's CDP, so a CRL whose
        scope includes certificates without CDP (the self-signed root under
        -crl_check_all, short-lived leaves without revocation URLs) has none.
        """
        if ca.parent_id is None and not ca.external:
            return None
        return self._child_urls(ca).crl

    async def _issuer(self, ca: CA) -> issuance.Issuer:
        """Return the CA's loaded signer (its key never leaves the engine)."""
        if ca.cert_der is None:
            raise EngineError(ProblemKind.POLICY, f"CA {ca.name} has no certificate yet")
        if ca.offline and not self._ceremony:
            raise EngineError(ProblemKind.POLICY, lifecycle.offline_refusal(ca))
        cached = self._issuers.get(ca.id)
        if cached is not None and cached[0] == ca.cert_der:
            return cached[1]
        key = await asyncio.to_thread(self._keys.load, ca.key)
        await self._rewrap_key(ca)
        chain = [x509.load_der_x509_certificate(d) for d in ca.chain_der]
        built = issuance.Issuer.create(ca.certificate, key, urls=self._child_urls(ca), chain=chain)
        self._issuers[ca.id] = (ca.cert_der, built)
        return built

    async def _rewrap_key(self, ca: CA) -> None:
        """Store ``ca``'s software key re-encrypted if it was wrapped with a weaker KDF."""
        fresh = await asyncio.to_thread(keys.rewrap, self._keys, ca.key)
        if fresh is None:
            return
        audit = self._audit(_KEYS, "ca.key-rewrap", ca.name)
        if await self._repo.replace_ca_key(ca.id, old=ca.key, new=fresh, audit=audit):
            _log.info("CA %s: key re-encrypted with the current KDF parameters", ca.name)
        self._cas.pop(ca.id, None)
        self._cas.pop(ca.name, None)

    def _forget(self, ca: CA) -> None:
        self._issuers.pop(ca.id, None)
        self._chains.pop(ca.id, None)
        self._constraints.pop(ca.id, None)
        self._cas.pop(ca.id, None)
        self._cas.pop(ca.name, None)

    # ------------------------------------------------------------------ CAs

    async def get_ca(self, ref: str | None = None) -> CA:
        """Return a CA by name or id; None means the default issuing CA.

        Raises:
            EngineError: NOT_FOUND for an unknown CA or when no default is set.
        """
        if ref is None:
            ref = self.settings.default_ca
            if ref is None:
                raise EngineError(ProblemKind.NOT_FOUND, "no default CA is configured")
        now = self._monotonic()
        cached = self._cas.get(ref)
        if cached is not None and cached[0] > now:
            return cached[1]
        ca = await self._repo.get_ca_by_name(ref) or await self._repo.get_ca(CAId(ref))
        if ca is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"unknown CA {ref!r}")
        if cached is not None and cached[1] != ca:
            self._forget(cached[1])  # its state or certificate changed on some node
        if len(self._cas) > 10_000:
            self._cas.clear()
        self._cas[ref] = (now + STATE_TTL, ca)
        return ca

    async def lineage(self, ca: CA) -> tuple[CA, ...]:
        """Return ``ca`` followed by every CA above it, up to its root."""
        out = [ca]
        while out[-1].parent_id is not None and len(out) <= 8:
            out.append(await self.get_ca(out[-1].parent_id))
        return tuple(out)

    async def find_ca(self, ref: str) -> CA | None:
        """Return a CA by name or id, None if absent."""
        try:
            return await self.get_ca(ref)
        except StorageUnavailableError:
            raise  # an outage is not an absent CA
        except EngineError:
            return None

    async def list_cas(self) -> Sequence[CA]:
        """Return every CA, oldest first."""
        return await self._repo.list_cas()

    async def chain_of(self, ca: CA) -> tuple[x509.Certificate, ...]:
        """Return the CA's certificate followed by its issuers up to the root."""
        cached = self._chains.get(ca.id)
        if cached is not None and cached[0] is ca:
            return cached[1]
        chain = (ca.certificate, *(x509.load_der_x509_certificate(d) for d in ca.chain_der))
        if ca.status is CAStatus.ACTIVE:
            # Parsed once per CA object: every issuance returns this chain.
            self._chains[ca.id] = (ca, chain)
        return chain

    async def _check_new_name(self, name: str) -> None:
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise EngineError(
                ProblemKind.MALFORMED, "CA names are 1-64 letters, digits, '-' or '_'"
            )
        if await self._repo.get_ca_by_name(name) is not None:
            raise EngineError(ProblemKind.CONFLICT, f"a CA named {name!r} already exists")

    # CA hierarchy: built in ``hierarchy``, bound here so callers hold one engine.
    create_root = hierarchy.create_root
    create_subordinate = hierarchy.create_subordinate
    create_import_request = hierarchy.create_import_request
    activate_import = hierarchy.activate_import
    # CA lifecycle: built in ``lifecycle``, bound the same way.
    disable_ca = lifecycle.disable
    enable_ca = lifecycle.enable
    revoke_ca = lifecycle.revoke
    renew_ca = lifecycle.renew
    set_ca_offline = lifecycle.set_offline

    def begin_ceremony(self) -> None:
        """Let this engine load offline CAs' keys (the ceremony commands only, never serve)."""
        self._ceremony = True

    @property
    def in_ceremony(self) -> bool:
        """Return whether this engine may load offline CAs' keys."""
        return self._ceremony

    # ------------------------------------------------------------------ CA storage
    # Used by ``hierarchy`` and the Matter service: they build a CA certificate, the
    # engine stores and audits it.

    def new_serial(self) -> Serial:
        """Return a fresh certificate serial from the engine's serial source."""
        return self._serials()

    async def store_ca(
        self,
        ca: CA,
        *,
        cert: x509.Certificate | None,
        issuer: CA | None,
        actor: Principal,
        action: str,
        **detail: str,
    ) -> None:
        """Store a new CA with one audit event and its certificate's record under ``issuer``.

        One write: the CA, its certificate in the issuer's inventory (``cert.issue``)
        and both audit records are stored together or not at all. ``issuer`` None with
        a certificate means self-signed.

        Raises:
            EngineError: CONFLICT (name taken), SERVER_INTERNAL (the certificate's
                serial is taken under its issuer; nothing was stored).
        """
        audit = self._audit(actor, action, ca.name, **detail)
        insert = None if cert is None else self._ca_certificate(issuer or ca, ca, cert, actor)
        try:
            await self._repo.add_ca(ca, audit=audit, certificate=insert)
        except SerialConflictError as exc:
            raise _taken_serial(ca, exc) from exc
        if insert is not None:
            await self._notify("issued", insert.record)

    async def replace_ca(
        self,
        previous: CA,
        updated: CA,
        *,
        actor: Principal,
        action: str,
        target: str,
        **detail: str,
    ) -> CA:
        """Store a changed CA if it is still as ``previous`` was read; drop its cached copy.

        Compare-and-set on ``previous.version``: any change in between (status, offline
        flag, certificate, chain, key) makes this write lose rather than undo it.

        Returns:
            ``updated`` as stored (its version bumped): pass it as ``previous`` next time.

        Raises:
            CAChangedError: CONFLICT, when the stored CA is no longer the version
                ``previous`` was (another command or node changed it in between).
        """
        audit = self._audit(actor, action, target, **detail)
        return await self._replace_ca(previous, updated, audit=audit)

    async def _replace_ca(
        self,
        previous: CA,
        updated: CA,
        *,
        audit: AuditEvent,
        certificate: CertificateInsert | None = None,
        revocation: CertificateRevocation | None = None,
    ) -> CA:
        """Do ``replace_ca`` with ``audit``, and with its certificate writes in the same write.

        ``certificate`` (a renewal's new certificate record, ``_ca_certificate``) and
        ``revocation`` (a sub-CA's certificate at its parent, ``_revocation``) are
        stored with the CA and their audit records, or nothing is.

        Raises:
            CAChangedError: as ``replace_ca``, and when ``revocation``'s certificate is
                no longer VALID.
            EngineError: SERVER_INTERNAL, ``certificate``'s serial is taken.
        """
        try:
            stored = await self._repo.update_ca(
                updated,
                expected_version=previous.version,
                audit=audit,
                certificate=certificate,
                revocation=revocation,
            )
        except SerialConflictError as exc:
            raise _taken_serial(previous, exc) from exc
        finally:
            self._forget(previous)
        if not stored:
            raise CAChangedError(
                detail=f"CA {previous.name} changed while this ran; nothing was written: "
                "check its state and run the command again"
            )
        if revocation is not None:
            await self._notify("revoked", revocation.revoked)
        if certificate is not None:
            await self._notify("issued", certificate.record)
        return replace(updated, version=previous.version + 1)

    def _ca_certificate(
        self, issuer: CA, ca: CA, cert: x509.Certificate, actor: Principal
    ) -> CertificateInsert:
        """Return ``ca``'s certificate as a record under ``issuer``, with its ``cert.issue``."""
        record = self._record(issuer, cert, profile="ca", names=(), actor=actor, is_ca=True)
        audit = self._audit(actor, "cert.issue", f"{issuer.name}/{record.serial_hex}", ca=ca.name)
        return CertificateInsert(record, audit)

    def _revocation(
        self, record: CertificateRecord, *, reason: RevocationReason, actor: Principal
    ) -> CertificateRevocation:
        """Return the revocation of ``record`` now, with its ``cert.revoke`` (as ``revoke``)."""
        return CertificateRevocation(
            record,
            at=self._now().replace(microsecond=0),
            reason=reason,
            audit=self._audit(actor, "cert.revoke", record.serial_hex, reason=str(reason)),
        )

    # ------------------------------------------------------------------ issuance

    def _record(
        self,
        ca: CA,
        cert: x509.Certificate,
        *,
        profile: str,
        names: Sequence[x509.GeneralName],
        actor: Principal,
        is_ca: bool = False,
    ) -> CertificateRecord:
        return CertificateRecord(
            ca_id=ca.id,
            serial=Serial(cert.serial_number),
            der=cert.public_bytes(serialization.Encoding.DER),
            profile=profile,
            subject=cert.subject.rfc4514_string(),
            sans=tuple(policy.san_value(n) for n in names),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            issued_at=self._now(),
            requester=str(actor),
            is_ca=is_ca,
        )

    def profile(self, name: str) -> profiles.Profile:
        """Return a configured profile; EngineError(INVALID_PROFILE) if unknown."""
        if name == profiles.ADMIN_CLIENT.name:
            return profiles.ADMIN_CLIENT  # not configurable: the admin API's trust rests on it
        found = self.settings.profiles.get(name) or _MATTER_PROFILES.get(name)
        if found is None:
            return profiles.get_profile(name)
        return found

    async def _constraints_of(self, ca: CA) -> tuple[x509.NameConstraints, ...]:
        cached = self._constraints.get(ca.id)
        if cached is not None and cached[0] is ca:
            return cached[1]
        found = tuple(issuance.chain_name_constraints(*await self.chain_of(ca)))
        self._constraints[ca.id] = (ca, found)
        return found

    async def authorize(
        self, principal: Principal, grant: grants.Grant, *, ca: str | None, profile: str
    ) -> CA:
        """Pipeline step 1: may ``principal`` (holding ``grant``) use this CA and profile now?

        Checks the grant's CA scope (a CA and its subtree) and profiles, then the
        state of the CA and of every CA above it. Returns the CA.

        Raises:
            EngineError: NOT_FOUND (CA), UNAUTHORIZED/INVALID_PROFILE (``grant.*``),
                POLICY (``ca.*``: not active, expired, under a revoked CA, offline).
        """
        return await self._authorize(principal, grant, ca=ca, profile=profile, ceremony=False)

    async def _authorize(
        self,
        principal: Principal,
        grant: grants.Grant,
        *,
        ca: str | None,
        profile: str,
        ceremony: bool,
    ) -> CA:
        """``authorize``; with ``ceremony`` an offline CA may issue (its key is loaded
        only where the ceremony runs, ``_issuer``)."""
        issuer_ca = await self.get_ca(ca)
        lineage = await self.lineage(issuer_ca)
        try:
            if issuer_ca.kind is CAKind.ADMIN and principal.kind not in _ADMIN_CA_USERS:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED,
                    f"{pipeline.Rule.CA_KIND}: CA {issuer_ca.name} issues only for the admin API",
                )
            pipeline.authorize(grant, lineage, profile=profile, now=self._now())
            if issuer_ca.offline and not ceremony:
                raise EngineError(ProblemKind.POLICY, lifecycle.offline_refusal(issuer_ca))
        except EngineError as exc:
            _log.info("refused %s on CA %s: %s", principal, issuer_ca.name, exc.detail)
            raise
        return issuer_ca

    async def check_request(
        self,
        principal: Principal,
        grant: grants.Grant,
        *,
        ca: str | None,
        profile: str,
        names: Sequence[x509.GeneralName],
        subject: x509.Name,
        public_key: object | None = None,
    ) -> pipeline.Approved:
        """Pipeline steps 1-2 without signing: what ``issue`` would check, in its order.

        Front ends call this to refuse before they hold or validate anything (ACME
        newOrder with ``public_key`` None, EST before manual approval).

        Raises:
            EngineError: as ``authorize`` and ``pipeline.check_request``.
        """
        prof = self.profile(profile)
        issuer_ca = await self.authorize(principal, grant, ca=ca, profile=prof.name)
        try:
            return pipeline.check_request(
                grant,
                issuer_ca,
                profile=prof,
                names=names,
                subject=subject,
                public_key=public_key,  # type: ignore[arg-type]  # algorithm_of checks it
                constraints=await self._constraints_of(issuer_ca),
            )
        except EngineError as exc:
            _log.info("refused %s on CA %s: %s", principal, issuer_ca.name, exc.detail)
            raise

    async def issue(
        self,
        csr: bytes | x509.CertificateSigningRequest,
        *,
        principal: Principal,
        grant: grants.Grant,
        profile: str,
        ca: str | None = None,
        names: Sequence[x509.GeneralName] | None = None,
        subject: x509.Name | None = None,
        lifetime: timedelta | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        matter: MatterRequest | None = None,
    ) -> IssuedCertificate:
        """Issue a leaf from a PKCS#10 request; stored and audited before it is returned.

        Every leaf privca signs comes through here or ``issue_with_generated_key``:
        ``authorize`` -> ``check_request`` -> build -> sign -> store + audit. ``grant``
        is what the principal's EST label, ACME directory or operator role allows
        (``grants.OPERATOR`` for the CLI). ``names`` (if given) must equal the CSR's
        SANs as a set, which is how a front end ties a CSR to what it authorised.
        Profiles ``matter-dac`` and ``matter-noc`` go to ``matter_api.issue_matter``,
        which takes the CA's signer through ``leaf_issuer`` (step 1); ``matter``
        carries their VID/PID or node/fabric/CAT parameters and a refusal names the
        Matter rule.

        Raises:
            EngineError: BAD_CSR, BAD_PUBLIC_KEY, REJECTED_IDENTIFIER, MALFORMED
                (validity), INVALID_PROFILE, UNAUTHORIZED, NOT_FOUND (CA), POLICY.
        """
        req = csr if isinstance(csr, x509.CertificateSigningRequest) else issuance.load_csr(csr)
        if profile in _MATTER_PROFILES:
            from server.ca.matter import api as matter_api  # it imports this module

            return await matter_api.issue_matter(
                self,
                req,
                principal=principal,
                grant=grant,
                profile=profile,
                ca=ca,
                lifetime=lifetime,
                request=matter,
            )
        csr_names = issuance.requested_names(req)
        if names is not None and {policy.san_value(n) for n in names} != {
            policy.san_value(n) for n in csr_names
        }:
            raise EngineError(ProblemKind.BAD_CSR, "the CSR's names differ from the request")
        approved = await self.check_request(
            principal,
            grant,
            ca=ca,
            profile=profile,
            names=csr_names,
            subject=subject if subject is not None else req.subject,
            public_key=req.public_key(),
        )
        return await self._sign_leaf(
            approved,
            req.public_key(),
            principal=principal,
            lifetime=lifetime,
            not_before=not_before,
            not_after=not_after,
        )

    async def issue_with_generated_key(
        self,
        *,
        principal: Principal,
        grant: grants.Grant,
        profile: str,
        key_algorithm: KeyAlgorithm,
        subject: x509.Name,
        names: Sequence[x509.GeneralName] = (),
        ca: str | None = None,
        lifetime: timedelta | None = None,
    ) -> IssuedCertificate:
        """Generate a key pair and issue for it; the private key is returned, never stored.

        Raises:
            EngineError: as ``issue``.
        """
        if profile in _MATTER_PROFILES:
            key = await asyncio.to_thread(keys.generate_private_key, key_algorithm)
            from server.ca.matter import api as matter_api  # it imports this module

            issued = await matter_api.issue_matter(
                self,
                key.public_key(),
                principal=principal,
                grant=grant,
                profile=profile,
                ca=ca,
                lifetime=lifetime,
                subject=subject,
            )
        else:
            approved = await self.check_request(
                principal, grant, ca=ca, profile=profile, names=names, subject=subject
            )
            if key_algorithm not in approved.profile.allowed_key_algorithms:
                raise EngineError(
                    ProblemKind.BAD_PUBLIC_KEY,
                    f"{pipeline.Rule.KEY}: profile {profile} does not allow {key_algorithm} keys",
                )
            key = await asyncio.to_thread(keys.generate_private_key, key_algorithm)
            issued = await self._sign_leaf(
                approved,
                key.public_key(),
                principal=principal,
                lifetime=lifetime,
                not_before=None,
                not_after=None,
            )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return replace(issued, private_key_pem=pem)

    async def _sign_leaf(
        self,
        approved: pipeline.Approved,
        public_key: object,
        *,
        principal: Principal,
        lifetime: timedelta | None,
        not_before: datetime | None,
        not_after: datetime | None,
    ) -> IssuedCertificate:
        """Pipeline steps 3-5 for an approved request: build, sign, store + audit."""
        issuer_ca, prof = approved.ca, approved.profile
        issuer = await self._issuer(issuer_ca)
        now = self._now()
        start, end = issuance.clamp_validity(
            now=now,
            not_before=not_before,
            not_after=not_after,
            lifetime=lifetime,
            profile=prof,
            max_lifetime=approved.max_lifetime,
            issuer_not_before=issuer.not_before,
            issuer_not_after=issuer.not_after,
            limit=approved.limit,
        )
        build = functools.partial(
            issuance.build_leaf,
            issuer,
            public_key=public_key,  # type: ignore[arg-type]  # checked by algorithm_of
            subject=approved.subject,
            names=approved.names,
            profile=prof,
            not_before=start,
            not_after=end,
        )
        # An in-process key signs in microseconds; a token's round trip must not
        # hold up the event loop (its session pool serves several threads).
        in_process = issuer_ca.key.backend == keys.Pkcs8KeyBackend.name
        for _ in range(_SERIAL_ATTEMPTS):
            serial = self._serials()
            cert = (
                build(serial=serial)
                if in_process
                else await asyncio.to_thread(build, serial=serial)
            )
            record = self._record(
                issuer_ca, cert, profile=prof.name, names=approved.names, actor=principal
            )
            try:
                await self._repo.add_certificate(
                    record,
                    audit=self._audit(
                        principal,
                        "cert.issue",
                        f"{issuer_ca.name}/{record.serial_hex}",
                        profile=prof.name,
                        subject=record.subject,
                    ),
                )
            except SerialConflictError:
                continue
            await self._notify("issued", record)
            chain = await self.chain_of(issuer_ca)
            return IssuedCertificate(record=record, certificate=cert, chain=chain)
        raise EngineError(ProblemKind.SERVER_INTERNAL, "could not allocate a unique serial")

    # ------------------------------------------------------------------ revocation

    async def find_certificates(self, query: CertQuery) -> Sequence[CertificateRecord]:
        """Search the inventory."""
        return await self._repo.list_certificates(query)

    async def page_certificates(
        self, query: CertQuery, *, cursor: str | None = None
    ) -> CertificatePage:
        """Search the inventory a page at a time (newest first); pass ``next_cursor`` back.

        Raises:
            EngineError: MALFORMED (a cursor that was not handed out).
        """
        return await self._repo.page_certificates(query, cursor=cursor)

    async def get_certificate(self, ca: str | None, serial: int) -> CertificateRecord:
        """Return one certificate of a CA (None: search all CAs for the serial).

        Raises:
            EngineError: NOT_FOUND, or CONFLICT when the serial is ambiguous.
        """
        if ca is not None:
            ca_obj = await self.get_ca(ca)
            rec = await self._repo.get_certificate(ca_obj.id, Serial(serial))
            if rec is None:
                raise EngineError(ProblemKind.NOT_FOUND, f"no certificate {serial:X} from {ca}")
            return rec
        found = await self._repo.list_certificates(CertQuery(serial=Serial(serial), limit=2))
        if not found:
            raise EngineError(ProblemKind.NOT_FOUND, f"no certificate with serial {serial:X}")
        if len(found) > 1:
            raise EngineError(ProblemKind.CONFLICT, f"serial {serial:X} exists under several CAs")
        return found[0]

    async def certificate_status(self, ca_id: CAId, serial: int) -> CertStatus:
        """Return only the status of a certificate of a known CA (a per-request check).

        Raises:
            EngineError: NOT_FOUND.
        """
        status = await self._repo.certificate_status(ca_id, Serial(serial))
        if status is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"no certificate {serial:X} from {ca_id}")
        return status

    async def revoke(
        self,
        serial: int,
        *,
        principal: Principal,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        ca: str | None = None,
    ) -> CertificateRecord:
        """Revoke a certificate (leaf or subordinate CA).

        Raises:
            EngineError: NOT_FOUND, ALREADY_REVOKED, BAD_REVOCATION_REASON.
        """
        if reason is RevocationReason.REMOVE_FROM_CRL:
            raise EngineError(
                ProblemKind.BAD_REVOCATION_REASON, "removeFromCRL is only for delta CRLs"
            )
        rec = await self.get_certificate(ca, serial)
        if rec.status is CertStatus.REVOKED:
            raise EngineError(ProblemKind.ALREADY_REVOKED, f"{rec.serial_hex} is already revoked")
        revocation = self._revocation(rec, reason=reason, actor=principal)
        updated = await self._repo.revoke_certificate(
            rec.ca_id, rec.serial, at=revocation.at, reason=reason, audit=revocation.audit
        )
        if updated is None:
            raise EngineError(ProblemKind.ALREADY_REVOKED, f"{rec.serial_hex} is already revoked")
        await self._notify("revoked", updated)
        return updated

    # ------------------------------------------------------------------ status hooks

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener`` after every stored issuance and revocation (OCSP pre-signing)."""
        self._listeners.append(listener)

    async def _notify(self, event: str, record: CertificateRecord) -> None:
        for listener in self._listeners:
            try:
                if event == "issued":
                    await listener.issued(record)
                else:
                    await listener.revoked(record)
            except Exception:  # noqa: BLE001 - the certificate is stored; a hook must not undo that
                _log.exception("status listener failed for %s %s", event, record.serial_hex)

    # ------------------------------------------------------------------ signers
    # The CA key stays in its backend's ``Signer``; these hand a signer only to code
    # that has passed the check for what it signs.

    async def status_issuer(self, ca: CA) -> issuance.Issuer:
        """Return the signer a CA's CRLs and OCSP answers are made with.

        Any state with a certificate: a disabled CA, and a revoked one while its
        certificate is valid, keep publishing status for their certificates.

        Raises:
            EngineError: POLICY (no certificate yet; ``ca.offline`` outside a ceremony).
        """
        return await self._issuer(ca)

    async def leaf_issuer(
        self, principal: Principal, grant: grants.Grant, *, ca: str | None, profile: str
    ) -> tuple[CA, issuance.Issuer]:
        """Return an authorized CA's signer for a kind-specific leaf builder (Matter DAC/NOC).

        In a ceremony (``privca matter dac|noc issue --key FILE``) an offline Matter CA
        issues too: a PAA, RCAC or PAI kept offline signs at its ceremony, where its key
        is; a serving process never begins one.

        Raises:
            EngineError: as ``authorize``.
        """
        issuer_ca = await self._authorize(
            principal, grant, ca=ca, profile=profile, ceremony=self._ceremony
        )
        return issuer_ca, await self._issuer(issuer_ca)

    async def ca_issuer(self, parent: CA) -> issuance.Issuer:
        """Return the signer for a new CA certificate under ``parent`` (active, chain sound).

        Raises:
            EngineError: POLICY (``ca.*``).
        """
        pipeline.check_ca_state(await self.lineage(parent), self._now())
        return await self._issuer(parent)

    async def new_key(
        self, algorithm: KeyAlgorithm, *, label: str, key_backend: str | None = None
    ) -> tuple[KeyHandle, Signer]:
        """Create a CA key in the named key backend (None: the default); return handle, signer.

        Raises:
            EngineError: MALFORMED (backend not configured), and the backend's own errors.
        """
        backend = keys.choose(self._keys, key_backend)
        handle, _ = await asyncio.to_thread(backend.create, algorithm, label=label)
        return handle, await asyncio.to_thread(self._keys.load, handle)

    async def key_signer(self, handle: KeyHandle) -> Signer:
        """Return the signer of a stored key handle (delegated OCSP responder keys)."""
        return await asyncio.to_thread(self._keys.load, handle)

    def _carried(self) -> custody.CarriedKeys:
        backend = (
            self._keys.owner(KeyHandle(backend=custody.CARRIED, ref="", blob=b""))
            if isinstance(self._keys, keys.KeyBackends)
            else None
        )
        if not isinstance(backend, custody.CarriedKeys):
            raise EngineError(ProblemKind.SERVER_INTERNAL, "carried CA keys are not configured")
        return backend

    async def carry_out_key(self, ca: CA) -> tuple[KeyHandle, bytes]:
        """Return the carried handle for ``ca``'s software key and the key file to write.

        Nothing is stored: pass the handle to ``set_ca_offline(key=...)`` once the file is
        safely written (``custody``).

        Raises:
            EngineError: CONFLICT (not a ``pkcs8`` key), SERVER_INTERNAL (wrong passphrase).
        """
        return await asyncio.to_thread(self._carried().carry_out, ca.key)

    async def attach_key(self, ca: CA, key_file: bytes) -> None:
        """Let this process sign with ``ca``'s carried key, read from its key file.

        Raises:
            EngineError: CONFLICT (the key is not carried), MALFORMED (wrong file).
        """
        await asyncio.to_thread(self._carried().attach, ca.key, key_file)
        self._issuers.pop(ca.id, None)

    async def bring_back_key(self, ca: CA, key_file: bytes) -> KeyHandle:
        """Return the ``pkcs8`` handle of ``ca``'s carried key from its key file (not stored).

        Raises:
            EngineError: CONFLICT (the key is not carried), MALFORMED (wrong file).
        """
        handle, _ = await asyncio.to_thread(self._carried().open, ca.key, key_file)
        return handle

    def _signer_backend(self, ca: CA) -> keys.KeyBackend:
        """Return where ``ca``'s delegated OCSP signer key is made.

        An online CA's signer key goes where the CA's key is (a token CA's into the
        token): the processes that may load the CA key are the ones that sign with it.
        An offline CA's goes to the default backend: its ceremony makes the signer for
        serving processes, which may have neither the ceremony's token nor its key file.
        """
        if ca.offline or custody.is_carried(ca.key):
            return keys.choose(self._keys, None)
        owner = self._keys.owner(ca.key) if isinstance(self._keys, keys.KeyBackends) else None
        return owner or keys.choose(self._keys, None)

    async def issue_ocsp_signer(
        self, ca: CA, *, lifetime: timedelta
    ) -> tuple[CertificateRecord, KeyHandle]:
        """Issue a delegated OCSP responder certificate for ``ca`` (RFC 6960 §4.2.2.2).

        Any state with a valid certificate (status keeps being published); the key is
        made in the key backend, the certificate stored and audited like any other.

        Raises:
            EngineError: POLICY (no certificate, or expired).
        """
        now = self._now().replace(microsecond=0)
        pipeline.check_status_signer(await self.lineage(ca), now)
        issuer = await self._issuer(ca)
        handle, public_key = await asyncio.to_thread(
            self._signer_backend(ca).create, KeyAlgorithm.EC_P256, label=f"{ca.name}-ocsp"
        )
        for _ in range(_SERIAL_ATTEMPTS):
            cert = issuance.build_ocsp_signer(
                issuer,
                public_key=public_key,
                name=ca.name,
                not_before=now - issuance.OCSP_SIGNER_BACKDATE,
                not_after=min(now + lifetime, issuer.not_after),
                serial=self._serials(),
            )
            record = self._record(ca, cert, profile=OCSP_SIGNER_PROFILE, names=(), actor=_OCSP)
            try:
                await self._repo.add_certificate(
                    record,
                    audit=self._audit(_OCSP, "ocsp.signer-issue", f"{ca.name}/{record.serial_hex}"),
                )
            except SerialConflictError:
                continue
            return record, handle
        raise EngineError(ProblemKind.SERVER_INTERNAL, "could not allocate a unique serial")

    async def destroy_ocsp_signer_key(
        self, ca: CA, *, serial: Serial, key: KeyHandle
    ) -> AuditEvent:
        """Destroy a retired delegated OCSP signer's key in its backend; return its record.

        The caller (``status.retirement``) decides that the signer is retired; this
        refuses a handle that is any CA's key, so no mix-up of records can reach a CA key.
        The caller stores the ``ocsp.signer-key-destroy`` record with the signer's removal
        (one write): a ``pkcs8`` key is the stored handle's blob, gone only with that row.

        Returns:
            The ``ocsp.signer-key-destroy`` record (not stored yet).

        Raises:
            EngineError: CONFLICT (a CA's key; a backend that cannot destroy keys),
                SERVER_INTERNAL (backend not configured here), UNAVAILABLE (token).
        """
        for holder in await self.list_cas():
            if (holder.key.backend, holder.key.ref) == (key.backend, key.ref):
                raise EngineError(
                    ProblemKind.CONFLICT,
                    f"key {key.ref} is CA {holder.name}'s key: not destroyed",
                )
        await asyncio.to_thread(keys.destroy, self._keys, key)
        return self._audit(
            _OCSP,
            "ocsp.signer-key-destroy",
            f"{ca.name}/{serial:X}",
            backend=key.backend,
            ref=key.ref,
        )

    # ------------------------------------------------------------ kind-specific CAs and leaves

    def now(self) -> datetime:
        """Return the engine clock's time (aware UTC); Matter issuance uses it too."""
        return self._now()

    async def check_ca_name(self, name: str) -> None:
        """Check that ``name`` is a valid, unused CA name.

        Raises:
            EngineError: MALFORMED (bad name), CONFLICT (taken).
        """
        await self._check_new_name(name)

    async def add_kind_ca(
        self,
        *,
        name: str,
        kind: CAKind,
        parent: CA | None,
        key: KeyHandle,
        cert: x509.Certificate,
        actor: Principal,
        detail: dict[str, str],
    ) -> CA:
        """Store a CA whose certificate a kind-specific builder made (Matter PAA/PAI/RCAC/ICAC).

        Stored and audited like ``create_root``/``create_subordinate``; its certificate
        is recorded under its issuer. Such CAs name no revocation URLs in their leaves.

        Raises:
            EngineError: CONFLICT (name taken).
        """
        ca = hierarchy.new_active_ca(
            name,
            parent=parent,
            key_algorithm=KeyAlgorithm.EC_P256,
            key=key,
            cert=cert,
            created_at=self._now(),
            kind=kind,
            publish_revocation=False,
        )
        action = "ca.create-root" if parent is None else "ca.create-sub"
        await self.store_ca(
            ca, cert=cert, issuer=parent, actor=actor, action=action, kind=str(kind), **detail
        )
        return ca

    async def store_leaves(
        self,
        issuer_ca: CA,
        certs: Sequence[x509.Certificate],
        *,
        profile: str,
        principal: Principal,
    ) -> list[CertificateRecord | None]:
        """Store leaves built outside ``issuance`` (Matter), one audit event each.

        The writes run concurrently so the SQL repository's group commit puts many
        of them in one transaction. Each slot holds the stored record, or None where
        the serial was already taken (the caller rebuilds that one with a new serial).
        Status listeners are not called: Matter leaves carry no OCSP URL.
        """
        records = [
            self._record(issuer_ca, cert, profile=profile, names=(), actor=principal)
            for cert in certs
        ]
        results = await asyncio.gather(
            *(
                self._repo.add_certificate(
                    record,
                    audit=self._audit(
                        principal,
                        "cert.issue",
                        f"{issuer_ca.name}/{record.serial_hex}",
                        profile=profile,
                        subject=record.subject,
                    ),
                )
                for record in records
            ),
            return_exceptions=True,
        )
        out: list[CertificateRecord | None] = []
        for record, result in zip(records, results, strict=True):
            if isinstance(result, SerialConflictError):
                out.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(record)
        return out

    # ------------------------------------------------------------------ audit

    async def record_audit(self, event: AuditEvent) -> None:
        """Append an audit event for a decision made outside the engine's own writes
        (an admin API refusal)."""
        await self._repo.add_audit(event)

    async def audit_log(self, *, limit: int = 100) -> Sequence[AuditEvent]:
        """Return the newest audit events first."""
        return await self._repo.list_audit(limit=limit)

    async def audit_records(
        self, *, after_seq: int = 0, page: int = _AUDIT_PAGE
    ) -> AsyncIterator[AuditEvent]:
        """Yield the chained audit records after ``after_seq`` in seq order, a page at a time."""
        while True:
            batch = await self._repo.audit_page(after_seq=after_seq, limit=page)
            for event in batch:
                yield event
            if len(batch) < page:
                return
            after_seq = batch[-1].seq or after_seq

    async def verify_audit(self, *, page: int = _AUDIT_PAGE) -> trail.Verification:
        """Walk the whole audit chain (never more than ``page`` records in memory).

        Returns:
            How many records verified and the first break, if any (edited, deleted,
            reordered, a cut tail or a head that does not match the last record).
        """
        checker = trail.ChainVerifier()
        while True:
            walked = checker.last.seq
            async for event in self.audit_records(after_seq=walked, page=page):
                broken = checker.feed(event)
                if broken is not None:
                    return trail.Verification(checker.count, broken)
            # Read after the walk: records other writers appended meanwhile are walked
            # too, and a head ahead of every stored record is a cut tail.
            head = await self._repo.audit_head()
            if head.seq <= checker.last.seq or checker.last.seq == walked:
                break
        return trail.Verification(checker.count, checker.finish(head))

    async def page_audit(self, query: AuditQuery, *, cursor: str | None = None) -> AuditPage:
        """Search the audit log a page at a time; pass ``next_cursor`` back.

        Raises:
            EngineError: MALFORMED (a cursor that was not handed out).
        """
        return await self._repo.page_audit(query, cursor=cursor)


def _taken_serial(ca: CA, exc: SerialConflictError) -> EngineError:
    """Return the error for a CA certificate whose serial its issuer already used."""
    # 127 random bits: practically never; the certificate is signed, so no retry here.
    return EngineError(
        ProblemKind.SERVER_INTERNAL,
        f"CA {ca.name}: the certificate's serial {exc} is already taken under its issuer; "
        "nothing was stored: run the command again",
    )
