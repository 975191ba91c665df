"""The internal admin CA and admin client certificates bound to a role and scope.

The admin CA is a root of kind ``admin``: the pipeline lets it issue the
``admin-client`` profile only, and only to the CLI operator, privca itself and
admin principals (never an ACME account or EST client); EST's client-certificate
login does not trust it. An admin certificate logs in when it is directly issued
by the admin CA, within validity, has clientAuth, is not revoked, and its serial
is bound to a live identity here: a certificate of any other CA, or one the
binding does not know, gets nothing. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca import grants, profiles
from server.ca.admin.ports import AdminCertificate, AdminRepository
from server.ca.admin.roles import Role
from server.ca.admin.tokens import check_name
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import (
    CA,
    AuditEvent,
    CAKind,
    CAStatus,
    CertStatus,
    IssuedCertificate,
    KeyAlgorithm,
    Principal,
)

__all__ = ["AdminCerts"]

_log = logging.getLogger(__name__)


def _client_auth(cert: x509.Certificate) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in ekus


class AdminCerts:
    """The admin CA and the certificate identities it vouches for."""

    def __init__(self, engine: CAEngine, repo: AdminRepository, *, ca_name: str) -> None:
        self._engine = engine
        self._repo = repo
        self.ca_name = ca_name

    async def ensure_ca(self, *, actor: Principal, key_algorithm: KeyAlgorithm) -> CA:
        """Return the admin CA, creating it on first start.

        Raises:
            EngineError: CONFLICT when a CA of that name exists but is not the admin CA.
        """
        found = await self._engine.find_ca(self.ca_name)
        if found is None:
            _log.info("first start: creating the admin CA %r", self.ca_name)
            return await self._engine.create_root(
                self.ca_name, actor=actor, key_algorithm=key_algorithm, kind=CAKind.ADMIN
            )
        if found.kind is not CAKind.ADMIN:
            raise EngineError(
                ProblemKind.CONFLICT,
                f"CA {self.ca_name} exists but is not the admin CA: set [ca] admin_name",
            )
        return found

    async def admin_ca(self) -> CA:
        """Return the admin CA.

        Raises:
            EngineError: NOT_FOUND before the first start made it.
        """
        ca = await self._engine.find_ca(self.ca_name)
        if ca is None or ca.kind is not CAKind.ADMIN:
            raise EngineError(
                ProblemKind.NOT_FOUND, "no admin CA yet: `privca serve` makes it on first start"
            )
        return ca

    async def issue(
        self,
        name: str,
        *,
        role: Role,
        scope: str | None,
        lifetime: timedelta,
        actor: Principal,
    ) -> IssuedCertificate:
        """Issue an admin client certificate (key generated here) and bind it to a role.

        Through the one pipeline, with a grant of the admin CA and profile only.

        Raises:
            EngineError: MALFORMED (name), NOT_FOUND (admin CA), POLICY (CA state).
        """
        check_name(name)
        ca = await self.admin_ca()
        grant = grants.Grant(
            cas=frozenset({ca.name}),
            profiles=frozenset({profiles.ADMIN_CLIENT.name}),
            subject_patterns=(f"CN={name}",),
        )
        issued = await self._engine.issue_with_generated_key(
            principal=actor,
            grant=grant,
            profile=profiles.ADMIN_CLIENT.name,
            key_algorithm=KeyAlgorithm.EC_P256,
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            ca=ca.name,
            lifetime=lifetime,
        )
        record = issued.record
        identity = AdminCertificate(
            serial=record.serial,
            name=name,
            role=role,
            scope=scope,
            subject=record.subject,
            not_after=record.not_after,
            created_at=self._engine.now(),
            created_by=str(actor),
        )
        audit = AuditEvent(
            at=identity.created_at,
            actor=str(actor),
            action="admin.cert-create",
            target=name,
            detail={"serial": record.serial_hex, "role": str(role), "scope": scope or "*"},
            source=actor.source,
        )
        await self._repo.add_certificate(identity, audit=audit)
        return issued

    async def list(self) -> Sequence[AdminCertificate]:
        """Return every admin certificate identity."""
        return await self._repo.list_certificates()

    async def revoke(self, name: str, *, actor: Principal) -> Sequence[AdminCertificate]:
        """Unbind every live certificate of ``name`` and revoke them at the admin CA.

        Raises:
            EngineError: NOT_FOUND (no live certificate of that name).
        """
        now = self._engine.now()
        audit = AuditEvent(
            at=now, actor=str(actor), action="admin.cert-revoke", target=name, source=actor.source
        )
        revoked = await self._repo.revoke_certificates(name, at=now, audit=audit)
        if not revoked:
            raise EngineError(ProblemKind.NOT_FOUND, f"no live admin certificate named {name!r}")
        ca = await self.admin_ca()
        for identity in revoked:
            status = await self._engine.certificate_status(ca.id, identity.serial)
            if status is CertStatus.VALID:
                await self._engine.revoke(identity.serial, principal=actor, ca=ca.id)
        return revoked

    async def check(self, der: bytes) -> tuple[AdminCertificate | None, str | None]:
        """Return the identity a client certificate is bound to and why it may not log in.

        ``(None, reason)`` for a certificate that is not an admin certificate at all.
        """
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return None, "the client certificate does not parse"
        ca = await self._engine.find_ca(self.ca_name)
        if ca is None or ca.kind is not CAKind.ADMIN or ca.cert_der is None:
            return None, "no admin CA"
        issuer = ca.certificate
        try:
            if cert.issuer != issuer.subject:
                raise ValueError("issuer name")
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return None, "the client certificate is not from the admin CA"
        identity = await self._repo.certificate_by_serial(cert.serial_number)
        if identity is None:
            return None, "the client certificate is bound to no admin identity"
        now = self._engine.now()
        if ca.status is not CAStatus.ACTIVE:
            return identity, f"the admin CA is {ca.status}"
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            return identity, "the client certificate is not within its validity period"
        if not _client_auth(cert):
            return identity, "the client certificate does not allow clientAuth"
        if identity.revoked_at is not None:
            return identity, "the admin certificate is revoked"
        try:
            status = await self._engine.certificate_status(ca.id, cert.serial_number)
        except EngineError as exc:
            if exc.kind is not ProblemKind.NOT_FOUND:
                raise
            status = None
        if status is not CertStatus.VALID:
            return identity, "the admin certificate is revoked"
        return identity, None
