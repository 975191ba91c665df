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
from typing import Final

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
    CertificateRecord,
    CertQuery,
    CertStatus,
    IssuedCertificate,
    KeyAlgorithm,
    Principal,
)

__all__ = ["AdminCerts"]

_log = logging.getLogger(__name__)
# Valid admin certificates of one name revoked per run (a name has one or a few).
_PER_NAME: Final = 1000


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

    async def revoke(self, name: str, *, actor: Principal) -> Sequence[int]:
        """Unbind every live certificate of ``name``, then revoke each valid one at the admin CA.

        Two steps, as issuing is (the certificate, then its binding), and each one alone
        stops a login (``check`` wants a live binding and a valid certificate): the
        unbinding, one write with ``admin.cert-revoke``, first, then a ``cert.revoke``
        per certificate. The second step covers every valid ``admin-client``
        certificate issued for ``CN=<name>``, bound or not, so running the command
        again finishes what a failed run (or a failed binding at creation) left valid.

        Returns:
            The serials unbound or revoked now, ascending.

        Raises:
            EngineError: NOT_FOUND (no live binding and no valid certificate of that name).
        """
        now = self._engine.now()
        audit = AuditEvent(
            at=now, actor=str(actor), action="admin.cert-revoke", target=name, source=actor.source
        )
        unbound = await self._repo.revoke_certificates(name, at=now, audit=audit)
        ca = await self.admin_ca()
        done = {identity.serial for identity in unbound}
        for record in await self._valid_certificates(ca, name):
            try:
                await self._engine.revoke(record.serial, principal=actor, ca=ca.id)
            except EngineError as exc:
                if exc.kind is not ProblemKind.ALREADY_REVOKED:
                    raise
                continue  # revoked meanwhile (another run, `privca cert revoke`)
            done.add(record.serial)
        if not done:
            raise EngineError(ProblemKind.NOT_FOUND, f"no live admin certificate named {name!r}")
        return sorted(done)

    async def _valid_certificates(self, ca: CA, name: str) -> Sequence[CertificateRecord]:
        """Return the admin CA's valid ``admin-client`` certificates for ``CN=<name>``."""
        # check_name allows nothing rfc4514 escapes: the CN is one plain component.
        cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]).rfc4514_string()
        query = CertQuery(ca_id=ca.id, status=CertStatus.VALID, text=cn, limit=_PER_NAME)
        return [
            r
            for r in await self._engine.find_certificates(query)
            if cn in r.subject.split(",") and r.profile == profiles.ADMIN_CLIENT.name
        ]

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
