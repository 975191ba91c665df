"""Offline CAs: the ceremony that signs their status, and the watch that warns before it lapses.

A serving process never loads an offline CA's key (``CAEngine._issuer`` refuses
outside a ceremony). ``OfflineStatus.sign`` runs in ``privca ca sign-offline``
where the key is, on the same database, and stores for N days:

- the CA's CRL (served by ``crls.CrlPublisher``, which never regenerates it);
- a pre-signed OCSP answer for every unexpired certificate the CA issued (its
  sub-CAs), as the responder stores them;
- with ``ocsp_signer``, a delegated OCSP signer certificate (RFC 6960 §4.2.2.2)
  whose key serving processes may use: they then answer unknown serials and
  re-sign answers after a revocation without a ceremony.

Without a delegated signer, a request for a serial with no current stored
answer (an unknown serial, or after the answers expired) is answered
``unauthorized`` (see ``responder.Responder._signer``), and a revocation
reaches the CA's CRL and OCSP answers at the next ceremony.

``OfflineStatus.check`` (called by the maintenance loop of ``serve``) logs a
warning once a day per CA while what its last ceremony signed expires within
``[ca] offline_warn_days``. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from cryptography import x509

from server.ca import lifecycle
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock, Repository
from server.ca.status import crls, responder
from server.ca.status import ports as status_ports
from server.ca.types import CA, AuditEvent, CAId, CertQuery, CertStatus, CrlRecord

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = ["Ceremony", "OfflineStatus"]

log = logging.getLogger(__name__)

# A root signs a handful of sub-CAs; this bounds one ceremony's reads.
_MAX_CERTS: Final = 100_000
_MAX_DAYS: Final = 3660
_WARN_EVERY: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What one ``sign-offline`` ceremony stored."""

    ca: CA
    crl: CrlRecord
    answers: int
    signer: status_ports.SignerRecord | None


class OfflineStatus:
    """Sign an offline CA's status at its ceremony; tell serving processes when it lapses."""

    def __init__(
        self,
        engine: CAEngine,
        repo: Repository,
        store: status_ports.StatusRepository,
        *,
        crl_publisher: crls.CrlPublisher,
        ocsp: responder.Responder,
        warn_before: timedelta,
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._store = store
        self._crls = crl_publisher
        self._ocsp = ocsp
        self.warn_before = warn_before
        self._clock = clock
        self._warned: dict[CAId, datetime] = {}

    async def sign(
        self, ref: str, *, days: int, ocsp_signer: bool, actor: str, source: str = ""
    ) -> Ceremony:
        """Sign and store an offline CA's CRL and OCSP answers (and signer) valid for ``days``.

        Raises:
            EngineError: NOT_FOUND (CA), CONFLICT (the CA is online), MALFORMED (days),
                POLICY (``ca.offline``: the engine is not a ceremony's, so it may not
                load the key), UNAVAILABLE (another node is generating this CA's CRL).
        """
        ca = await self._engine.get_ca(ref)
        if not ca.offline:
            raise EngineError(
                ProblemKind.CONFLICT,
                f"CA {ca.name} is online: serving processes sign its status "
                f"(`privca ca set-offline {ca.name}` first)",
            )
        if not 1 <= days <= _MAX_DAYS:
            raise EngineError(ProblemKind.MALFORMED, f"--days must be 1-{_MAX_DAYS}")
        validity = timedelta(days=days)
        signer = await self._ocsp.issue_signer(ca, lifetime=validity) if ocsp_signer else None
        crl = await self._crls.regenerate(ca, actor=actor, source=source, validity=validity)
        if crl is None:
            raise EngineError(
                ProblemKind.UNAVAILABLE, "another node is generating this CA's CRL; try again"
            )
        now = self._clock.now()
        issued = await self._repo.list_certificates(
            CertQuery(ca_id=ca.id, expires_after=now, limit=_MAX_CERTS)
        )
        answers = 0
        for rec in issued:
            if await self._ocsp.presign(rec, validity=validity) is not None:
                answers += 1
        detail = {"days": str(days), "crl": str(crl.number), "answers": str(answers)}
        if signer is not None:
            detail["ocsp_signer"] = format(signer.serial, "X")
        await self._repo.add_audit(
            AuditEvent(
                at=now,
                actor=actor,
                action="ca.sign-offline",
                target=ca.name,
                detail=detail,
                source=source,
            )
        )
        log.info(
            "offline CA %s: CRL %d and %d OCSP answer(s) signed for %d days",
            ca.name,
            crl.number,
            answers,
            days,
        )
        return Ceremony(ca=ca, crl=crl, answers=answers, signer=signer)

    async def valid_until(self, ca: CA) -> datetime:
        """Return when what the CA's last ceremony signed stops covering it (now if never).

        The earliest of: the CRL's nextUpdate, and either the delegated signer's
        expiry (serving processes re-sign answers with it) or each stored answer's
        nextUpdate for certificates still valid then (a missing answer counts as now).
        """
        now = self._clock.now()
        crl = await self._repo.latest_crl(ca.id)
        until = crl.next_update if crl is not None else now
        signer = await self._store.current_signer(ca.id)
        if signer is not None and signer.not_after > now and ca.cert_der is not None:
            cert = x509.load_der_x509_certificate(signer.cert_der)
            if responder.is_issued_by(cert, ca.certificate):
                return min(until, signer.not_after)
        for rec in await self._repo.list_certificates(
            CertQuery(ca_id=ca.id, expires_after=now, limit=_MAX_CERTS)
        ):
            stored = await self._store.get_response(ca.id, rec.serial)
            if stored is None or (
                stored.cert_status != "revoked" and rec.status is CertStatus.REVOKED
            ):
                until = min(until, now)  # signed before a revocation: stale already
            elif stored.next_update < rec.not_after:
                until = min(until, stored.next_update)
        return until

    async def check(self) -> list[str]:
        """Warn (once a day per CA) about offline CAs whose signed status expires soon.

        Returns the names of the CAs warned about this time.
        """
        now = self._clock.now()
        warned: list[str] = []
        for ca in await self._engine.list_cas():
            if not ca.offline or not lifecycle.publishes_status(ca, now):
                continue
            until = await self.valid_until(ca)
            if until - now > self.warn_before:
                self._warned.pop(ca.id, None)
                continue
            last = self._warned.get(ca.id)
            if last is not None and now - last < _WARN_EVERY:
                continue
            self._warned[ca.id] = now
            warned.append(ca.name)
            log.warning(
                "offline CA %s: the CRL and OCSP answers from its last ceremony %s %s; "
                "run `privca ca sign-offline %s --days N` where its key is",
                ca.name,
                "expired" if until <= now else "expire",
                until.isoformat(timespec="seconds"),
                ca.name,
            )
        return warned
