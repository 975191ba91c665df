"""``AdminService``: every admin API operation, authorized first, then one engine call.

Each method takes the authenticated ``AdminPrincipal`` and runs ``roles.refusal``
before anything else; a refusal raises ``EngineError`` (UNAUTHORIZED, 403) after
an audit record (actor ``admin:<name>``, action ``admin.denied``, source the
client address). Failed logins are audited the same way and raise
UNAUTHENTICATED (401). The work itself is the engine's (``CAEngine``, ``hierarchy``,
``lifecycle``, the status service's CRL publisher), as the CLI does it: an
issuer's certificates come from ``CAEngine.issue`` with a grant of its subtree.
The internal admin CA is not managed here: to this API it does not exist.
EST (``est.EstAdmin``), ACME (``acme.AcmeAdmin``), Matter (``matter.MatterAdmin``)
and the audit log (``audit.AuditAdmin``) are parts of this service, reached as
``service.est``, ``.acme``, ``.matter`` and ``.audit``, authorizing through the
same ``Guard``.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509

from server.ca import grants, hierarchy, issuance, lifecycle
from server.ca.acme import api as acme_api
from server.ca.admin import roles
from server.ca.admin.acme import AcmeAdmin, EabKeys
from server.ca.admin.audit import AuditAdmin
from server.ca.admin.certs import AdminCerts
from server.ca.admin.est import EstAdmin
from server.ca.admin.guard import ANONYMOUS, Guard, lifetime
from server.ca.admin.matter import MatterAdmin
from server.ca.admin.ports import AdminCertificate, AdminRepository, AdminToken, CrlPublisher
from server.ca.admin.roles import AdminPrincipal, Permission, Role
from server.ca.admin.tokens import Tokens
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.matter import api as matter_api
from server.ca.types import (
    CA,
    CAKind,
    CAMode,
    CertificatePage,
    CertificateRecord,
    CertQuery,
    CertStatus,
    CrlRecord,
    IssuedCertificate,
    KeyAlgorithm,
    Principal,
    RevocationReason,
)

__all__ = ["ANONYMOUS", "AdminService", "CAOptions", "CAView"]


@dataclass(frozen=True, slots=True)
class CAOptions:
    """What ``ca create-root``/``create-sub`` take beyond name, key type, days, path, mode.

    ``subject``: an RFC 4514 DN (None: ``CN=<name>``); ``permit_dns``/``permit_ip``:
    NameConstraints permitted subtrees; ``key_backend``: a backend name the front end
    took from ``KEY_BACKENDS`` (None: the default; the engine refuses one this server
    has not configured). Subordinates only (a root ignores them): ``allow_dns``/
    ``allow_ip`` (the CA's identifier policy, checked at issuance) and
    ``publish_revocation`` (None: the mode's default).
    """

    subject: str | None = None
    permit_dns: tuple[str, ...] = ()
    permit_ip: tuple[str, ...] = ()
    key_backend: str | None = None
    allow_dns: tuple[str, ...] = ()
    allow_ip: tuple[str, ...] = ()
    publish_revocation: bool | None = None


_NO_OPTIONS: Final = CAOptions()


@dataclass(frozen=True, slots=True)
class CAView:
    """A CA as the admin API shows it: the stored CA, its state now, its parent's name."""

    ca: CA
    state: str
    parent: str | None


class AdminService:
    """The admin API over the engine: authentication, authorization, operations."""

    def __init__(
        self,
        engine: CAEngine,
        repo: AdminRepository,
        *,
        admin_ca: str,
        base_grant: grants.Grant = grants.OPERATOR,
        crls: CrlPublisher | None = None,
        est: est_api.EstService | None = None,
        acme_directories: acme_api.Directories | None = None,
        eab: EabKeys | None = None,
    ) -> None:
        self._engine = engine
        self._base_grant = base_grant
        self._crls = crls
        self._guard = Guard(engine)
        self.tokens = Tokens(repo)
        self.certs = AdminCerts(engine, repo, ca_name=admin_ca)
        # The parts over the protocol services; each authorizes through the same guard.
        self.est = EstAdmin(self._guard, est)
        self.acme = AcmeAdmin(self._guard, acme_directories, eab)
        self.audit = AuditAdmin(self._guard, engine)
        self.matter = MatterAdmin(
            self._guard, matter_api.MatterService(engine), base_grant=base_grant
        )

    def now(self) -> datetime:
        """Return the engine clock's time (what "expired" is measured against)."""
        return self._engine.now()

    # ------------------------------------------------------------------ audit

    async def _deny(
        self,
        who: AdminPrincipal | None,
        *,
        kind: ProblemKind,
        action: str,
        target: str,
        reason: str,
        address: str | None,
        name: str | None = None,
    ) -> EngineError:
        """Write the denial's audit record; return the error to raise."""
        return await self._guard.deny(
            who, kind=kind, action=action, target=target, reason=reason, address=address, name=name
        )

    # ------------------------------------------------------------------ authentication

    async def authenticate_token(
        self, secret: str, *, address: str | None, action: str
    ) -> AdminPrincipal:
        """Return the identity of a bearer token.

        Raises:
            EngineError: UNAUTHENTICATED (unknown, revoked or expired), audited.
        """
        token, why = await self.tokens.check(secret, now=self._engine.now())
        if token is None or why is not None:
            raise await self._deny(
                None,
                kind=ProblemKind.UNAUTHENTICATED,
                action=action,
                target="token",
                reason=why or "unknown token",
                address=address,
                name=token.name if token is not None else None,
            )
        return AdminPrincipal(
            name=token.name, role=token.role, scope=token.scope, via="token", address=address
        )

    async def authenticate_certificate(
        self, der: bytes, *, address: str | None, action: str
    ) -> AdminPrincipal:
        """Return the identity of an admin client certificate (from the TLS handshake).

        Raises:
            EngineError: UNAUTHENTICATED (not an admin certificate, or not valid), audited.
        """
        identity, why = await self.certs.check(der)
        if identity is None or why is not None:
            raise await self._deny(
                None,
                kind=ProblemKind.UNAUTHENTICATED,
                action=action,
                target="certificate",
                reason=why or "not an admin certificate",
                address=address,
                name=identity.name if identity is not None else None,
            )
        return AdminPrincipal(
            name=identity.name,
            role=identity.role,
            scope=identity.scope,
            via="certificate",
            address=address,
        )

    async def unauthenticated(
        self, *, address: str | None, action: str, reason: str
    ) -> EngineError:
        """Audit a request without credentials; return the 401 error to raise."""
        return await self._deny(
            None,
            kind=ProblemKind.UNAUTHENTICATED,
            action=action,
            target="-",
            reason=reason,
            address=address,
        )

    # ------------------------------------------------------------------ authorization

    async def _authorize(
        self, who: AdminPrincipal, permission: Permission, ca: CA | None, *, target: str
    ) -> None:
        await self._guard.authorize(who, permission, ca, target=target)

    async def _ca(self, ref: str) -> CA:
        """Return a CA the admin API manages. Raises EngineError NOT_FOUND."""
        return await self._guard.ca(ref)

    async def view(self, ca: CA) -> CAView:
        """Return a CA as the admin API shows it (for a CA an operation just made)."""
        return await self._view(ca)

    async def _view(self, ca: CA, cas: Sequence[CA] | None = None) -> CAView:
        parent = None
        if ca.parent_id is not None:
            found = next((c for c in cas if c.id == ca.parent_id), None) if cas else None
            parent = (found or await self._engine.get_ca(ca.parent_id)).name
        return CAView(ca=ca, state=lifecycle.state_of(ca, self._engine.now()), parent=parent)

    async def _scope_lineage(self, scope: str | None) -> tuple[str, ...]:
        return await self._guard.scope_lineage(scope)

    async def check_scope(self, scope: str | None) -> str | None:
        """Return the CA name a new identity's scope names (None: every CA).

        Raises:
            EngineError: NOT_FOUND (unknown CA, or the admin CA).
        """
        return None if scope is None else (await self._ca(scope)).name

    # ------------------------------------------------------------------ identities

    def whoami(self, who: AdminPrincipal) -> AdminPrincipal:
        """Return the caller's own identity (any role)."""
        return who

    async def create_token(
        self,
        name: str,
        *,
        role: Role,
        scope: str | None,
        lifetime: timedelta,
        actor: Principal,
    ) -> tuple[AdminToken, str]:
        """Make a bearer token (CLI: a shell on the database host); return record and secret.

        Raises:
            EngineError: MALFORMED, CONFLICT, NOT_FOUND (scope).
        """
        return await self.tokens.create(
            name,
            role=role,
            scope=await self.check_scope(scope),
            now=self._engine.now(),
            lifetime=lifetime,
            actor=actor,
        )

    async def list_tokens(self) -> Sequence[AdminToken]:
        """Return every token record."""
        return await self.tokens.list()

    async def revoke_token(self, name: str, *, actor: Principal) -> None:
        """Revoke a token. Raises EngineError NOT_FOUND."""
        await self.tokens.revoke(name, now=self._engine.now(), actor=actor)

    async def create_certificate(
        self,
        name: str,
        *,
        role: Role,
        scope: str | None,
        lifetime: timedelta,
        actor: Principal,
    ) -> IssuedCertificate:
        """Issue an admin client certificate bound to a role and scope (key included).

        Raises:
            EngineError: MALFORMED, NOT_FOUND (scope, admin CA), POLICY.
        """
        return await self.certs.issue(
            name, role=role, scope=await self.check_scope(scope), lifetime=lifetime, actor=actor
        )

    async def list_certificates(self) -> Sequence[AdminCertificate]:
        """Return every admin certificate identity."""
        return await self.certs.list()

    async def revoke_certificate_identity(self, name: str, *, actor: Principal) -> Sequence[int]:
        """Revoke every live admin certificate of ``name``; return the serials.

        Raises EngineError NOT_FOUND.
        """
        return await self.certs.revoke(name, actor=actor)

    async def ensure_admin_ca(self, *, actor: Principal, key_algorithm: KeyAlgorithm) -> CA:
        """Create the admin CA when missing (first start). Raises EngineError CONFLICT."""
        return await self.certs.ensure_ca(actor=actor, key_algorithm=key_algorithm)

    async def admin_anchors(self) -> list[x509.Certificate]:
        """Return the admin CA certificate for the HTTPS listener's client trust."""
        ca = await self._engine.find_ca(self.certs.ca_name)
        if ca is None or ca.kind is not CAKind.ADMIN or ca.cert_der is None:
            return []
        return [ca.certificate]

    # ------------------------------------------------------------------ CAs

    async def list_cas(self, who: AdminPrincipal) -> list[CAView]:
        """Return the CAs in the caller's scope, oldest first (any role)."""
        await self._authorize(who, Permission.READ, None, target="cas")
        cas = [c for c in await self._engine.list_cas() if c.kind is not CAKind.ADMIN]
        visible = roles.subtree_ids(cas, who.scope)
        return [await self._view(c, cas) for c in cas if c.id in visible]

    async def get_ca(self, who: AdminPrincipal, ref: str) -> CAView:
        """Return one CA in scope. Raises EngineError NOT_FOUND, UNAUTHORIZED."""
        ca = await self._ca(ref)
        await self._authorize(who, Permission.READ, ca, target=ca.name)
        return await self._view(ca)

    async def ca_chain(self, who: AdminPrincipal, ref: str) -> tuple[x509.Certificate, ...]:
        """Return a CA's certificate and its issuers up to the root.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, CONFLICT (pending import: no certificate).
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.READ, ca, target=ca.name)
        if ca.cert_der is None:
            raise EngineError(ProblemKind.CONFLICT, f"CA {ca.name} has no certificate yet")
        return await self._engine.chain_of(ca)

    async def create_root(
        self,
        who: AdminPrincipal,
        name: str,
        *,
        key_algorithm: KeyAlgorithm,
        days: int | None,
        path_length: int | None,
        mode: CAMode,
        options: CAOptions = _NO_OPTIONS,
    ) -> CAView:
        """Create a root CA (unscoped owners), as ``privca ca create-root`` does.

        Raises:
            EngineError: UNAUTHORIZED, MALFORMED (subject, name constraints, key backend
                not configured), CONFLICT, POLICY.
        """
        await self._authorize(who, Permission.CREATE_ROOT, None, target=name)
        ca = await self._engine.create_root(
            name,
            actor=who.principal,
            key_algorithm=key_algorithm,
            lifetime=_days(days),
            path_length=path_length,
            mode=mode,
            subject=_subject(options.subject),
            name_constraints=hierarchy.permitted_subtrees(options.permit_dns, options.permit_ip),
            key_backend=options.key_backend,
        )
        return await self._view(ca)

    async def create_subordinate(
        self,
        who: AdminPrincipal,
        parent: str,
        name: str,
        *,
        key_algorithm: KeyAlgorithm,
        days: int | None,
        path_length: int | None,
        mode: CAMode,
        options: CAOptions = _NO_OPTIONS,
    ) -> CAView:
        """Create a CA under ``parent`` (an owner of the parent's subtree), as ``ca create-sub``.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, MALFORMED (subject, name constraints,
                networks, key backend not configured), CONFLICT, POLICY.
        """
        parent_ca = await self._ca(parent)
        await self._authorize(who, Permission.MANAGE_CA, parent_ca, target=parent_ca.name)
        ca = await self._engine.create_subordinate(
            name,
            parent=parent_ca.name,
            actor=who.principal,
            key_algorithm=key_algorithm,
            lifetime=_days(days),
            path_length=path_length,
            mode=mode,
            subject=_subject(options.subject),
            name_constraints=hierarchy.permitted_subtrees(options.permit_dns, options.permit_ip),
            dns_suffixes=options.allow_dns,
            ip_networks=options.allow_ip,
            publish_revocation=options.publish_revocation,
            key_backend=options.key_backend,
        )
        return await self._view(ca)

    async def import_request(
        self,
        who: AdminPrincipal,
        name: str,
        *,
        key_algorithm: KeyAlgorithm,
        subject: str | None,
        mode: CAMode,
        key_backend: str | None = None,
    ) -> CAView:
        """Make a CA key and CSR for an external signer; the CA waits, pending (unscoped owners).

        An imported CA has no parent here (its issuer is outside privca), so only an
        owner of every CA may start one, as for a root.

        Raises:
            EngineError: UNAUTHORIZED, MALFORMED (name, subject, key backend not
                configured), CONFLICT (name taken).
        """
        await self._authorize(who, Permission.CREATE_ROOT, None, target=name)
        ca = await self._engine.create_import_request(
            name,
            actor=who.principal,
            key_algorithm=key_algorithm,
            subject=issuance.parse_name(subject) if subject is not None else None,
            mode=mode,
            key_backend=key_backend,
        )
        return await self._view(ca)

    async def activate_import(self, who: AdminPrincipal, ref: str, *, pem: bytes) -> CAView:
        """Activate a pending imported CA with its signed certificate and chain (owners).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, CONFLICT (not pending), MALFORMED
                (the chain fails its checks), POLICY (too many tiers).
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        return await self._view(
            await self._engine.activate_import(ca.name, pem=pem, actor=who.principal)
        )

    async def disable_ca(self, who: AdminPrincipal, ref: str) -> CAView:
        """Stop a CA issuing. Raises EngineError NOT_FOUND, UNAUTHORIZED, CONFLICT."""
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        return await self._view(await self._engine.disable_ca(ca.name, actor=who.principal))

    async def enable_ca(self, who: AdminPrincipal, ref: str) -> CAView:
        """Let a disabled CA issue again. Raises EngineError NOT_FOUND, UNAUTHORIZED, CONFLICT."""
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        return await self._view(await self._engine.enable_ca(ca.name, actor=who.principal))

    async def revoke_ca(self, who: AdminPrincipal, ref: str, *, reason: RevocationReason) -> CAView:
        """Revoke a CA and its subtree.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, CONFLICT, ALREADY_REVOKED,
                BAD_REVOCATION_REASON.
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        revoked = await self._engine.revoke_ca(ca.name, reason=reason, actor=who.principal)
        return await self._view(revoked)

    async def renew_ca(
        self, who: AdminPrincipal, ref: str, *, rekey: bool, days: int | None
    ) -> tuple[CAView, lifecycle.Renewal]:
        """Give a CA a new certificate (online CAs only: this is no ceremony).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, CONFLICT, MALFORMED, POLICY.
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        _days(days)
        renewal = await self._engine.renew_ca(ca.name, actor=who.principal, rekey=rekey, days=days)
        return await self._view(renewal.ca), renewal

    async def regenerate_crl(self, who: AdminPrincipal, ref: str) -> CrlRecord:
        """Publish a CA's CRL now.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, POLICY, UNAVAILABLE.
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.MANAGE_CA, ca, target=ca.name)
        if self._crls is None:
            raise EngineError(ProblemKind.UNAVAILABLE, "the revocation services are not running")
        principal = who.principal
        return await self._crls.generate_crl(ca.id, actor=str(principal), source=principal.source)

    # ------------------------------------------------------------------ certificates

    async def issue(
        self,
        who: AdminPrincipal,
        ref: str,
        csr: bytes,
        *,
        profile: str,
        days: int | None,
        hours: int | None = None,
    ) -> IssuedCertificate:
        """Issue a leaf from a PKCS#10 request under a CA in scope (issuers).

        ``days`` or ``hours`` (not both) ask for a lifetime within the profile's limit.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, and what ``CAEngine.issue`` raises.
        """
        ca = await self._ca(ref)
        await self._authorize(who, Permission.ISSUE, ca, target=ca.name)
        grant = roles.issuance_grant(
            self._base_grant, who.scope, await self._scope_lineage(who.scope)
        )
        return await self._engine.issue(
            csr,
            principal=who.principal,
            grant=grant,
            profile=profile,
            ca=ca.name,
            lifetime=lifetime(days, hours),
        )

    async def page_certificates(
        self,
        who: AdminPrincipal,
        *,
        ca: str | None,
        status: CertStatus | None,
        text: str | None,
        expires_before: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> CertificatePage:
        """Search the certificates of the CAs in scope, a page at a time.

        Raises:
            EngineError: NOT_FOUND (CA), UNAUTHORIZED (a CA outside scope), MALFORMED.
        """
        if ca is not None:
            ca_obj = await self._ca(ca)
            await self._authorize(who, Permission.READ, ca_obj, target=ca_obj.name)
            ca_ids = frozenset({ca_obj.id})
        else:
            await self._authorize(who, Permission.READ, None, target="certificates")
            cas = [c for c in await self._engine.list_cas() if c.kind is not CAKind.ADMIN]
            ca_ids = roles.subtree_ids(cas, who.scope)
        query = CertQuery(
            ca_ids=ca_ids, status=status, text=text, expires_before=expires_before, limit=limit
        )
        return await self._engine.page_certificates(query, cursor=cursor)

    async def _certificate(self, serial: int, ca: str | None) -> tuple[CertificateRecord, CA]:
        issuer = await self._ca(ca) if ca is not None else None
        record = await self._engine.get_certificate(issuer.id if issuer else None, serial)
        found = await self._engine.get_ca(record.ca_id)
        if found.kind is CAKind.ADMIN:
            raise EngineError(ProblemKind.NOT_FOUND, f"no certificate with serial {serial:X}")
        return record, found

    async def get_certificate(
        self, who: AdminPrincipal, serial: int, *, ca: str | None = None
    ) -> CertificateRecord:
        """Return one certificate of a CA in scope.

        Raises:
            EngineError: NOT_FOUND, CONFLICT (serial under several CAs: name one), UNAUTHORIZED.
        """
        record, issuer = await self._certificate(serial, ca)
        await self._authorize(
            who, Permission.READ, issuer, target=f"{issuer.name}/{record.serial_hex}"
        )
        return record

    async def revoke_certificate(
        self,
        who: AdminPrincipal,
        serial: int,
        *,
        reason: RevocationReason,
        ca: str | None = None,
    ) -> CertificateRecord:
        """Revoke a certificate; a CA's current certificate revokes that CA (owners of it).

        Raises:
            EngineError: NOT_FOUND, CONFLICT, UNAUTHORIZED, ALREADY_REVOKED,
                BAD_REVOCATION_REASON.
        """
        record, issuer = await self._certificate(serial, ca)
        holder = await lifecycle.holder_of(self._engine, record)
        target = f"{issuer.name}/{record.serial_hex}"
        if holder is not None:
            await self._authorize(who, Permission.MANAGE_CA, holder, target=target)
        else:
            await self._authorize(who, Permission.REVOKE, issuer, target=target)
        updated, _ = await lifecycle.revoke_certificate(
            self._engine, record, reason=reason, actor=who.principal
        )
        return updated


def _days(days: int | None) -> timedelta | None:
    return lifetime(days)


def _subject(text: str | None) -> x509.Name | None:
    """Return a requested CA subject (None: the default). Raises EngineError MALFORMED."""
    return issuance.parse_name(text) if text is not None else None
