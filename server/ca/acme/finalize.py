"""ACME finalize and certificate download (RFC 8555 §7.4, §7.4.2).

Turns a ready order and its CSR into a certificate through ``CAEngine.issue``
(the one issuance pipeline) and serves the chain back to the account that owns
it. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import issuance
from server.ca.acme import orders
from server.ca.acme import types as at
from server.ca.acme.ports import AcmeRepository
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock
from server.ca.types import AuditEvent, CertificateRecord, Principal

__all__ = ["Finalizer", "certificate_ref"]

_ISSUED_CACHE: Final = 4096
# Refusals of the CSR itself: the order stays ready so the client may send another.
_CSR_KINDS: Final = frozenset(
    {
        ProblemKind.BAD_CSR,
        ProblemKind.BAD_PUBLIC_KEY,
        ProblemKind.BAD_SIGNATURE_ALGORITHM,
        ProblemKind.REJECTED_IDENTIFIER,
        ProblemKind.MALFORMED,
    }
)

_Issued = tuple[at.AccountId, x509.Certificate, tuple[x509.Certificate, ...]]


def certificate_ref(record: CertificateRecord) -> str:
    """Return the reference an order keeps to its certificate (``<ca id>-<serial hex>``)."""
    return f"{record.ca_id}-{record.serial_hex}"


class Finalizer:
    """Issue the certificate of a ready order and hand out its chain."""

    def __init__(
        self, engine: CAEngine, repo: AcmeRepository, order_book: orders.Orders, clock: Clock
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._clock = clock
        self._orders = order_book
        self._issued: dict[str, _Issued] = {}

    async def finalize(
        self, account: at.Account, order_id: str, csr: bytes, *, source: str = ""
    ) -> at.Order:
        """Issue the certificate of a ready order (RFC 8555 §7.4).

        ``source`` (the client address) goes into the issuance's audit record.

        A refused CSR leaves the order ready so the client may try again.

        Raises:
            EngineError: ORDER_NOT_READY, BAD_CSR, BAD_PUBLIC_KEY, REJECTED_IDENTIFIER,
                MALFORMED, NOT_FOUND, UNAUTHORIZED.
        """
        order = await self._orders.get_order(account, order_id)
        if order.status is not at.OrderStatus.READY:
            raise EngineError(
                ProblemKind.ORDER_NOT_READY, f"the order is {order.status}, not ready"
            )
        request = issuance.load_csr(csr)
        spki = request.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki == account.key.spki:
            # RFC 8555 §11.1: an account key must not also be a certificate key.
            raise EngineError(ProblemKind.BAD_CSR, "the CSR's key is the account key")
        # The claim's time and the CSR's key let recovery (server.ca.acme.recovery) end a
        # claim whose process died, with the certificate it issued if it got that far.
        if not await self._repo.claim_order(
            order.id,
            frm=at.OrderStatus.PENDING,
            since=self._clock.now(),
            csr_key_sha256=hashlib.sha256(spki).hexdigest(),
        ):
            raise EngineError(ProblemKind.ORDER_NOT_READY, "the order is already being finalized")
        try:
            issued = await self._engine.issue(
                request,
                principal=Principal("acme", account.id, source=source),
                grant=self._orders.settings.grant,
                ca=self._orders.settings.ca,
                profile=order.profile,
                names=[orders.general_name(i) for i in order.identifiers],
                not_before=order.not_before,
                not_after=order.not_after,
            )
        except EngineError as exc:
            if exc.kind in _CSR_KINDS:
                # Back to ready: the claim is undone, nothing changed, nothing recorded.
                await self._repo.finish_order(
                    order.id, status=at.OrderStatus.PENDING, cert_ref=None, error=None
                )
            else:
                await self._fail(
                    account, order, at.StoredProblem(exc.kind, exc.detail, exc.subproblems), source
                )
            raise
        except BaseException:
            await self._fail(
                account,
                order,
                at.StoredProblem(ProblemKind.SERVER_INTERNAL, "issuance failed"),
                source,
            )
            raise
        ref = certificate_ref(issued.record)
        if not await self._repo.finish_order(
            order.id, status=at.OrderStatus.VALID, cert_ref=ref, error=None
        ):
            # Recovery took the claim for dead before the certificate was stored (the
            # issuance outlasted its bound): the order stays as recovery left it.
            return await self._orders.get_order(account, order.id)
        # Clients download right after finalizing, usually from this node: keep the chain.
        if len(self._issued) >= _ISSUED_CACHE:
            self._issued.pop(next(iter(self._issued)))
        self._issued[ref] = (account.id, issued.certificate, issued.chain)
        return replace(order, status=at.OrderStatus.VALID, cert_ref=ref)

    async def _fail(
        self, account: at.Account, order: at.Order, problem: at.StoredProblem, source: str
    ) -> None:
        """Make ``order`` invalid with ``problem``; one write with its ``acme.order-invalid``.

        The account's record, from ``source``, with the problem's kind (as
        ``acme.authz-validate``, not its detail).
        """
        audit = AuditEvent(
            at=self._clock.now(),
            actor=f"acme:{account.id}",
            action="acme.order-invalid",
            target=order.id,
            detail={"error": str(problem.kind)},
            source=source,
        )
        await self._repo.finish_order(
            order.id, status=at.OrderStatus.INVALID, cert_ref=None, error=problem, audit=audit
        )

    async def certificate_chain(
        self, account: at.Account, cert_ref: str
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """Return an account's certificate and its chain (nearest issuer first, root last).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED.
        """
        cached = self._issued.get(cert_ref)
        if cached is not None:
            owner, leaf, chain = cached
            if owner != account.id:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "this certificate belongs to another account"
                )
            return leaf, chain
        ca_id, sep, serial_hex = cert_ref.partition("-")
        try:
            serial = int(serial_hex, 16)
        except ValueError:
            raise EngineError(ProblemKind.NOT_FOUND, "no such certificate") from None
        if not sep or not ca_id:
            raise EngineError(ProblemKind.NOT_FOUND, "no such certificate")
        rec = await self._engine.get_certificate(ca_id, serial)
        if rec.requester != f"acme:{account.id}":
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "this certificate belongs to another account"
            )
        ca = await self._engine.get_ca(ca_id)
        chain = await self._engine.chain_of(ca)
        return x509.load_der_x509_certificate(rec.der), chain
