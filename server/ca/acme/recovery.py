"""Recovery of ACME claims a dead process left behind (RFC 8555 §7.1.6).

A challenge POST claims its authorization (``validating``, the challenge
``processing``) and a finalize claims its order (``processing``) before the work
that ends the claim. A process that dies in between (kill -9, out of memory, a
lost node, or a shutdown cancelling queued validations) leaves the claim held
forever: the order is polled as ``processing`` until the client gives up, and the
authorization can never be validated. ``Recovery.sweep`` ends every claim older
than a bound well above the longest live one, as the EST engine hands back an
enrollment stuck ``issuing`` (``server.ca.est.enrollment``):

- an authorization: the challenge and the authorization become ``invalid`` with
  a ``serverInternal`` problem (RFC 8555 allows processing -> invalid, not
  processing -> pending, and clients poll a pending authorization without
  posting the challenge again); the client starts a new order;
- an order: ``valid`` with the certificate the dead finalize issued (found by
  the account, names, profile and CSR key, issued after the claim), otherwise
  ``invalid`` with a ``serverInternal`` problem.

Every change is a compare-and-set on the claim, committed with its audit record
(actor ``system:acme``): any number of nodes may sweep at once and each claim
ends once. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import health, policy
from server.ca.acme import orders
from server.ca.acme import types as at
from server.ca.acme.finalize import certificate_ref
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.settings import AcmeSettings
from server.ca.acme.validation import ValidationSettings
from server.ca.api import CAEngine
from server.ca.errors import ProblemKind
from server.ca.ports import Clock
from server.ca.types import AuditEvent, CertificateRecord, CertQuery

__all__ = ["ACTOR", "FINALIZE_BOUND", "Recovery", "Swept", "validation_bound"]

log = logging.getLogger(__name__)

ACTOR: Final = "system:acme"
# A finalize holds its claim for one issuance: seconds, a PKCS#11 round trip at
# worst. The EST engine takes an enrollment issuing for this long as dead too.
FINALIZE_BOUND: Final = timedelta(minutes=10)
# The least a validation claim is given, whatever its settings say.
_VALIDATION_FLOOR: Final = timedelta(minutes=10)
_SWEEP_EVERY: Final = 60.0
# Claims ended per kind and round; a backlog drains over the following rounds.
_BATCH: Final = 100
# Newest certificates naming the order's first identifier searched for its certificate:
# the sweep runs minutes after the claim, so the one it seeks is among the newest.
_CANDIDATES: Final = 500
_VALIDATION_PROBLEM: Final = at.StoredProblem(
    ProblemKind.SERVER_INTERNAL,
    "validation was interrupted by a server restart; create a new order",
)
_FINALIZE_PROBLEM: Final = at.StoredProblem(
    ProblemKind.SERVER_INTERNAL,
    "finalization was interrupted by a server restart; create a new order",
)


def validation_bound(settings: AcmeSettings) -> timedelta:
    """Return how old a validation claim must be to be taken for dead.

    Twice the longest a live one can last: a claim waits in the process's queue
    behind at most ``validation_queue`` others run ``validation_concurrency`` at a
    time, and each run is ``attempts`` timeouts plus the delays between them (17
    minutes with the defaults, so 34). Never less than 10 minutes.
    """
    longest = _longest_run(settings.validation) * math.ceil(
        max(1, settings.validation_queue) / max(1, settings.validation_concurrency)
    )
    return max(_VALIDATION_FLOOR, 2 * longest)


def _longest_run(v: ValidationSettings) -> timedelta:
    attempts = max(1, v.attempts)
    delays = v.retry_delay * attempts * (attempts - 1) / 2  # retry_delay * 1, * 2, ...
    return timedelta(seconds=attempts * v.timeout + delays)


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep ended: authorizations made invalid, orders made valid or invalid."""

    authzs_invalid: int = 0
    orders_valid: int = 0
    orders_invalid: int = 0


class Recovery:
    """End ACME claims whose process died (any node may run it; each claim ends once)."""

    def __init__(
        self, engine: CAEngine, repo: AcmeRepository, *, settings: AcmeSettings, clock: Clock
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._clock = clock
        self.validation_bound = validation_bound(settings)
        self.finalize_bound = FINALIZE_BOUND

    async def run(self) -> None:
        """Forever: sweep once a minute (the main process of every node)."""
        loop_health = health.LoopHealth("ACME claim recovery", log)
        while True:
            # First a minute in: the claims it ends are at least ten minutes old anyway.
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                swept = await self.sweep()
            except Exception as exc:  # noqa: BLE001 - task supervisor: the loop goes on
                loop_health.failed(exc)
            else:
                loop_health.succeeded()
                if swept != Swept():
                    log.warning("ACME claims left by a stopped process ended: %s", swept)

    async def sweep(self) -> Swept:
        """End the claims older than their bound once; return what changed here."""
        now = self._clock.now()
        invalid_authzs = 0
        cutoff = now - self.validation_bound
        for authz in await self._repo.stuck_authzs(claimed_before=cutoff, limit=_BATCH):
            invalid_authzs += await self._end_validation(authz)
        valid = invalid = 0
        cutoff = now - self.finalize_bound
        for claim in await self._repo.stuck_orders(claimed_before=cutoff, limit=_BATCH):
            ended = await self._end_finalization(claim, claimed_before=cutoff)
            valid += ended is at.OrderStatus.VALID
            invalid += ended is at.OrderStatus.INVALID
        return Swept(invalid_authzs, valid, invalid)

    async def _end_validation(self, authz: at.Authorization) -> bool:
        """Make a dead claim's challenge and authorization invalid; False if it ended already."""
        stuck = [c for c in authz.challenges if c.status is at.ChallengeStatus.PROCESSING]
        failed = replace(
            authz,
            status=at.AuthzStatus.INVALID,
            challenges=tuple(
                replace(c, status=at.ChallengeStatus.INVALID, error=_VALIDATION_PROBLEM)
                if c.status is at.ChallengeStatus.PROCESSING
                else c
                for c in authz.challenges
            ),
        )
        detail = {
            "identifier": orders.audit_identifier(authz),
            **({"challenge": str(stuck[0].type)} if stuck else {}),
            "result": str(at.AuthzStatus.INVALID),
            "error": str(ProblemKind.SERVER_INTERNAL),
            "reason": "interrupted",
        }
        audit = self._event("acme.authz-validate", authz.id, detail)
        return await self._repo.save_authz(failed, validating_done=True, audit=audit, claimed=True)

    async def _end_finalization(
        self, claim: at.ClaimedOrder, *, claimed_before: datetime
    ) -> at.OrderStatus | None:
        """Finish a dead finalize: valid with its certificate, else invalid; None if it ended."""
        order = claim.order
        found = await self._issued_for(claim)
        if found is not None:
            ref = certificate_ref(found)
            status, error = at.OrderStatus.VALID, None
            audit = self._event(
                "acme.order-valid", order.id, {"certificate": ref, "reason": "interrupted"}
            )
        else:
            ref, status, error = None, at.OrderStatus.INVALID, _FINALIZE_PROBLEM
            audit = self._event(
                "acme.order-invalid",
                order.id,
                {"error": str(ProblemKind.SERVER_INTERNAL), "reason": "interrupted"},
            )
        done = await self._repo.finish_order(
            order.id,
            status=status,
            cert_ref=ref,
            error=error,
            audit=audit,
            claimed_before=claimed_before,
        )
        return status if done else None

    async def _issued_for(self, claim: at.ClaimedOrder) -> CertificateRecord | None:
        """Return the certificate the claim's finalize stored before its process died."""
        order = claim.order
        if claim.csr_key_sha256 is None or not order.identifiers:
            return None
        names = {policy.san_value(orders.general_name(i)) for i in order.identifiers}
        found = await self._engine.find_certificates(
            CertQuery(text=order.identifiers[0].value, limit=_CANDIDATES)
        )
        for record in found:
            if (
                record.requester == f"acme:{order.account_id}"
                and not record.is_ca
                and record.profile == order.profile
                and record.issued_at >= claim.since
                and set(record.sans) == names
                and _key_sha256(record) == claim.csr_key_sha256
            ):
                return record
        return None

    def _event(self, action: str, target: str, detail: dict[str, str]) -> AuditEvent:
        return AuditEvent(
            at=self._clock.now(), actor=ACTOR, action=action, target=target, detail=detail
        )


def _key_sha256(record: CertificateRecord) -> str:
    spki = (
        x509.load_der_x509_certificate(record.der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).hexdigest()
