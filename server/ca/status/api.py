"""Revocation services facade: the one surface the OCSP/CRL/caIssuers front ends call.

``StatusService`` ties the OCSP responder and the CRL publisher to the engine
(it listens to issuances and revocations) and runs their background work.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from server.ca import health
from server.ca.errors import EngineError, ProblemKind, StorageUnavailableError
from server.ca.ports import Clock, Repository, SystemClock
from server.ca.status import crls, offline, responder, retirement
from server.ca.status import ports as status_ports
from server.ca.types import CertificateRecord, CertStatus, CrlRecord

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = ["CrlRecord", "OcspAnswer", "StatusService", "StatusSettings"]

log = logging.getLogger(__name__)

OcspAnswer = responder.OcspAnswer


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """Revocation service settings (built by ``server.config``)."""

    ocsp: responder.ResponderSettings = field(default_factory=responder.ResponderSettings)
    crl: crls.CrlSettings = field(default_factory=crls.CrlSettings)
    poll_interval: timedelta = timedelta(seconds=1)
    refresh_interval: timedelta = timedelta(minutes=5)
    # Warn this long before an offline CA's ceremony-signed CRL/OCSP answers expire.
    offline_warn: timedelta = timedelta(days=7)
    # A replaced delegated OCSP signer's key is destroyed this long after it expired.
    signer_retention: timedelta = retirement.RETAIN_AFTER_EXPIRY


class StatusService:
    """OCSP answers, CRLs and CA certificates for validators."""

    def __init__(
        self,
        engine: CAEngine,
        repo: Repository,
        store: status_ports.StatusRepository,
        *,
        settings: StatusSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings or StatusSettings()
        clock = clock or SystemClock()
        self._engine = engine
        self.responder = responder.Responder(
            engine, repo, store, settings=self.settings.ocsp, clock=clock
        )
        self.crls = crls.CrlPublisher(engine, repo, store, settings=self.settings.crl, clock=clock)
        self.offline = offline.OfflineStatus(
            engine,
            repo,
            store,
            crl_publisher=self.crls,
            ocsp=self.responder,
            warn_before=self.settings.offline_warn,
            clock=clock,
        )
        self.retirement = retirement.SignerRetirement(
            engine, store, clock=clock, retain_after_expiry=self.settings.signer_retention
        )
        self._store = store
        # Certificates whose OCSP answer could not be stored (storage went away between
        # storing the certificate and pre-signing): signed again once storage is back;
        # meanwhile a query is answered by live signing, as for any unsigned serial.
        self._unsigned: dict[tuple[str, int], CertificateRecord] = {}
        # caIssuers: the last good copy of each CA certificate (public and signed), served
        # while storage is unreachable.
        self._ca_certs: dict[str, bytes] = {}

    def attach(self) -> StatusService:
        """Register with the engine so issuances and revocations reach this service."""
        self._engine.add_status_listener(self)
        return self

    async def issued(self, record: CertificateRecord) -> None:
        """Pre-sign the OCSP response of a new certificate (later, if storage is away)."""
        try:
            await self.responder.issued(record)
        except StorageUnavailableError:
            self._sign_later(record)

    async def revoked(self, record: CertificateRecord) -> None:
        """Re-sign its OCSP response and schedule its CA's CRL (later, if storage is away)."""
        try:
            await self.crls.revoked(record.ca_id)
            await self.responder.revoked(record)
        except StorageUnavailableError:
            self._sign_later(record)

    def _sign_later(self, record: CertificateRecord) -> None:
        log.warning(
            "OCSP answer of %s not stored (storage unavailable); signing it when storage is back",
            record.serial_hex,
        )
        self._unsigned[(record.ca_id, record.serial)] = record

    async def sign_pending(self) -> int:
        """Pre-sign the answers that an outage kept from storage; return how many.

        A revocation also marks its CA's CRL dirty again.
        """
        done = 0
        for key, record in list(self._unsigned.items()):
            if record.status is CertStatus.REVOKED:
                await self.crls.revoked(record.ca_id)
            await self.responder.presign(record)
            # A newer event for the same certificate may have arrived meanwhile.
            if self._unsigned.get(key) is record:
                del self._unsigned[key]
            done += 1
        if done:
            log.info("signed %d OCSP answer(s) held back by a storage outage", done)
        return done

    # ------------------------------------------------------------------ front-end surface

    def cached_ocsp(self, body: bytes) -> OcspAnswer | None:
        """Return a cached OCSP answer for exactly these request bytes."""
        return self.responder.cached(body)

    async def ocsp(self, body: bytes) -> OcspAnswer:
        """Answer a DER OCSP request.

        Raises:
            EngineError: MALFORMED, UNAUTHORIZED.
        """
        return await self.responder.answer(body)

    async def crl(self, ca_id: str) -> CrlRecord:
        """Return the latest CRL of a CA (by id).

        Raises:
            EngineError: NOT_FOUND, UNAVAILABLE.
        """
        return await self.crls.latest(ca_id)

    async def generate_crl(self, ca: str | None, *, actor: str, source: str = "") -> CrlRecord:
        """Publish a fresh CRL of a CA (by name or id; None: the default CA) now.

        Raises:
            EngineError: NOT_FOUND, POLICY (CA not active), UNAVAILABLE (another
                node is generating this CA's CRL).
        """
        record = await self.crls.regenerate(
            await self._engine.get_ca(ca), actor=actor, source=source
        )
        if record is None:
            raise EngineError(
                ProblemKind.UNAVAILABLE,
                "another node is generating this CA's CRL; try again",
                retry_after=2,
            )
        return record

    async def sign_offline(
        self, ca: str, *, days: int, ocsp_signer: bool, actor: str, source: str = ""
    ) -> offline.Ceremony:
        """Run an offline CA's ceremony: its CRL and OCSP answers (and signer) for ``days``.

        Raises:
            EngineError: NOT_FOUND, CONFLICT (CA online), MALFORMED, POLICY, UNAVAILABLE.
        """
        return await self.offline.sign(
            ca, days=days, ocsp_signer=ocsp_signer, actor=actor, source=source
        )

    async def ca_certificate(self, ca_id: str) -> bytes:
        """Return the DER certificate of a CA (by id), as named in caIssuers.

        Raises:
            EngineError: NOT_FOUND.
        """
        try:
            ca = await self._engine.find_ca(ca_id)
        except StorageUnavailableError:
            if ca_id in self._ca_certs:
                return self._ca_certs[ca_id]
            raise
        if ca is None or ca.id != ca_id or ca.cert_der is None:  # None: a pending import
            raise EngineError(ProblemKind.NOT_FOUND, f"no CA certificate {ca_id!r}")
        self._ca_certs[ca_id] = ca.cert_der
        return ca.cert_der

    # ------------------------------------------------------------------ background

    async def retire_signers(self) -> int | None:
        """Destroy retired delegated OCSP signers' keys on one node; None: another node does."""
        async with self._store.leader("ocsp-signer-retire") as leader:
            if not leader:
                return None
            return await self.retirement.sweep()

    async def start(self) -> None:
        """Load the CAs served."""
        await self.responder.reload()

    async def run_pollers(self) -> None:
        """Forever: pick up responses other processes replaced (every poll interval)."""
        interval = self.settings.poll_interval.total_seconds()
        loop_health = health.LoopHealth("OCSP change poll", log)
        while True:
            try:
                await self.responder.poll_changes()
                await self.sign_pending()
            except Exception as exc:  # noqa: BLE001 - task supervisor: the loop goes on
                loop_health.failed(exc)
            else:
                loop_health.succeeded()
            await asyncio.sleep(interval)

    async def run_maintenance(self) -> None:
        """Forever: regenerate CRLs, refresh OCSP responses, retire old OCSP signer keys,
        warn about offline CAs' status."""
        poll = self.settings.poll_interval.total_seconds()
        refresh_every = self.settings.refresh_interval.total_seconds()
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        loop_health = health.LoopHealth("revocation maintenance", log)
        while True:
            try:
                await self.crls.tick()
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + refresh_every
                    await self.responder.reload()
                    async with self._store.leader("ocsp-refresh") as leader:
                        if leader:
                            await self.responder.refresh_stale()
                    await self.retire_signers()
                    await self.offline.check()
            except Exception as exc:  # noqa: BLE001 - task supervisor: the loop goes on
                loop_health.failed(exc)
            else:
                loop_health.succeeded()
            self.crls.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.crls.wake.wait(), timeout=poll)
