"""Matter through the admin API: PAA/PAI/RCAC/ICAC creation, DAC and NOC issuance.

A PAA and an RCAC are roots (Matter Core ch. 6): unscoped owners make them, as any
root. A PAI is a CA under its PAA and an ICAC one under its RCAC: owners of the
parent make them. DACs and NOCs are leaves: issuers of the PAI, ICAC or RCAC issue
them from a CSR through the one issuance pipeline, with a grant narrowed to their
subtree. The work is ``MatterService``'s, as the CLI does it.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography import x509

from server.ca import grants
from server.ca.admin import roles
from server.ca.admin.guard import Guard, lifetime
from server.ca.admin.roles import AdminPrincipal, Permission
from server.ca.errors import EngineError, ProblemKind
from server.ca.matter import api as matter_api
from server.ca.types import CA, IssuedCertificate

__all__ = ["MAX_DAC_BATCH", "MatterAdmin"]

# DACs one request may ask for. The CLI's bulk run (``privca matter dac issue``) writes
# thousands to local files; over HTTP one answer holds them all, so a request is kept
# to what one 64 KiB body of CSRs (about 450 bytes of PEM each) carries.
MAX_DAC_BATCH: Final = 100


class MatterAdmin:
    """Matter CAs and device/operational certificates for admin identities."""

    def __init__(
        self, guard: Guard, matter: matter_api.MatterService, *, base_grant: grants.Grant
    ) -> None:
        self._guard = guard
        self._matter = matter
        self._base_grant = base_grant

    async def create_paa(
        self,
        who: AdminPrincipal,
        name: str,
        *,
        vid: int | None,
        days: int | None,
        key_backend: str | None = None,
    ) -> CA:
        """Create a PAA (unscoped owners); VID-scoped with ``vid``.

        Raises:
            EngineError: UNAUTHORIZED, MALFORMED (also a key backend not configured),
                CONFLICT, POLICY.
        """
        await self._guard.authorize(who, Permission.CREATE_ROOT, None, target=name)
        return await self._matter.create_paa(
            name,
            actor=who.principal,
            vid=vid,
            lifetime=lifetime(days),
            key_backend=key_backend,
        )

    async def create_rcac(
        self,
        who: AdminPrincipal,
        name: str,
        *,
        fabric_id: int | None,
        rcac_id: int | None,
        days: int | None,
        key_backend: str | None = None,
    ) -> CA:
        """Create an RCAC (unscoped owners).

        Raises:
            EngineError: UNAUTHORIZED, MALFORMED (also a key backend not configured),
                CONFLICT, POLICY.
        """
        await self._guard.authorize(who, Permission.CREATE_ROOT, None, target=name)
        return await self._matter.create_rcac(
            name,
            actor=who.principal,
            fabric_id=fabric_id,
            rcac_id=rcac_id,
            lifetime=lifetime(days),
            key_backend=key_backend,
        )

    async def create_pai(
        self,
        who: AdminPrincipal,
        paa: str,
        name: str,
        *,
        vid: int | None,
        pid: int | None,
        days: int | None,
        key_backend: str | None = None,
    ) -> CA:
        """Create a PAI under a PAA in scope (owners).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, MALFORMED, CONFLICT, POLICY (not a PAA,
                VID rules).
        """
        parent = await self._guard.ca(paa)
        await self._guard.authorize(who, Permission.MANAGE_CA, parent, target=parent.name)
        return await self._matter.create_pai(
            name,
            paa=parent.name,
            vid=vid,
            pid=pid,
            actor=who.principal,
            lifetime=lifetime(days),
            key_backend=key_backend,
        )

    async def create_icac(
        self,
        who: AdminPrincipal,
        rcac: str,
        name: str,
        *,
        fabric_id: int | None,
        icac_id: int | None,
        days: int | None,
        key_backend: str | None = None,
    ) -> CA:
        """Create an ICAC under an RCAC in scope (owners).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, MALFORMED, CONFLICT, POLICY (not an RCAC,
                fabric rules).
        """
        parent = await self._guard.ca(rcac)
        await self._guard.authorize(who, Permission.MANAGE_CA, parent, target=parent.name)
        return await self._matter.create_icac(
            name,
            rcac=parent.name,
            actor=who.principal,
            fabric_id=fabric_id,
            icac_id=icac_id,
            lifetime=lifetime(days),
            key_backend=key_backend,
        )

    async def _grant(self, who: AdminPrincipal) -> grants.Grant:
        lineage = await self._guard.scope_lineage(who.scope)
        return roles.issuance_grant(self._base_grant, who.scope, lineage)

    async def issue_dac(
        self,
        who: AdminPrincipal,
        pai: str,
        csr: bytes,
        *,
        vid: int | None,
        pid: int | None,
        days: int | None,
    ) -> IssuedCertificate:
        """Issue a DAC from a CSR under a PAI in scope (issuers).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, and what ``CAEngine.issue`` raises
                (BAD_CSR, POLICY naming the Matter rule).
        """
        ca = await self._guard.ca(pai)
        await self._guard.authorize(who, Permission.ISSUE, ca, target=ca.name)
        return await self._matter.issue_dac(
            csr,
            pai=ca.name,
            actor=who.principal,
            grant=await self._grant(who),
            vid=vid,
            pid=pid,
            lifetime=lifetime(days),
        )

    async def issue_dacs(
        self,
        who: AdminPrincipal,
        pai: str,
        csrs: Sequence[bytes],
        *,
        vid: int,
        pid: int,
        days: int | None,
    ) -> tuple[list[matter_api.DeviceCredential], x509.Certificate]:
        """Issue one DAC per CSR under a PAI in scope (issuers), as ``matter dac issue --csr-dir``.

        Every CSR is checked before any DAC is issued: one bad CSR (named ``csrs[i]``)
        refuses the request. Keys are never generated here (a private key does not
        travel in an API answer). At most ``MAX_DAC_BATCH`` CSRs. Returns the DACs in
        request order and the PAI certificate.

        Raises:
            EngineError: MALFORMED (no CSRs, too many), NOT_FOUND, UNAUTHORIZED, and what
                ``MatterService.issue_dacs`` raises (BAD_CSR, BAD_PUBLIC_KEY, POLICY).
        """
        ca = await self._guard.ca(pai)
        await self._guard.authorize(who, Permission.ISSUE, ca, target=ca.name)
        if not 1 <= len(csrs) <= MAX_DAC_BATCH:
            raise EngineError(ProblemKind.MALFORMED, f"give 1..{MAX_DAC_BATCH} CSRs")
        out: list[matter_api.DeviceCredential] = []
        async for batch in self._matter.issue_dacs(
            pai=ca.name,
            vid=vid,
            pid=pid,
            actor=who.principal,
            grant=await self._grant(who),
            csrs=[(f"csrs[{i}]", csr) for i, csr in enumerate(csrs)],
            lifetime=lifetime(days),
        ):
            out += batch
        return out, ca.certificate

    async def issue_noc(
        self,
        who: AdminPrincipal,
        issuer: str,
        csr: bytes,
        *,
        node_id: int | None,
        fabric_id: int | None,
        cats: Sequence[int],
        days: int | None,
    ) -> IssuedCertificate:
        """Issue a NOC from a NOCSR under an ICAC or RCAC in scope (issuers).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, and what ``CAEngine.issue`` raises
                (BAD_CSR, POLICY naming the Matter rule).
        """
        ca = await self._guard.ca(issuer)
        await self._guard.authorize(who, Permission.ISSUE, ca, target=ca.name)
        return await self._matter.issue_noc(
            csr,
            ca=ca.name,
            actor=who.principal,
            grant=await self._grant(who),
            node_id=node_id,
            fabric_id=fabric_id,
            cats=cats,
            lifetime=lifetime(days),
        )
