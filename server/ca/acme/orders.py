"""ACME orders, authorizations and challenges (RFC 8555 §7.4, §7.5; RFC 8738 ip).

Checks identifiers against the CA's policy, creates and reuses authorizations,
derives order and authorization status (§7.1.6) and runs challenge validation in
the background. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final

from cryptography import x509

from server.ca import policy
from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.ratelimit import RateLimiter
from server.ca.acme.renewal import Renewal
from server.ca.acme.settings import AcmeSettings
from server.ca.acme.workqueue import ValidationQueue
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind, SubProblem
from server.ca.ports import Clock
from server.ca.types import AuditEvent, Principal

__all__ = ["Orders", "audit_identifier", "derive_authz", "derive_order", "general_name"]

log = logging.getLogger(__name__)

_ORDERS_LISTED: Final = 1000
_RETRY_AFTER_PROCESSING: Final = 1
# Pending authorizations leave the count when validated, deactivated or expired;
# a client at the limit is asked back after an hour (deactivating frees room now).
_RETRY_AFTER_PENDING: Final = 3600
_DEAD_AUTHZ: Final = frozenset(
    {
        at.AuthzStatus.INVALID,
        at.AuthzStatus.DEACTIVATED,
        at.AuthzStatus.EXPIRED,
        at.AuthzStatus.REVOKED,
    }
)


def general_name(ident: at.Identifier) -> x509.GeneralName:
    """Return the SAN entry an identifier becomes."""
    if ident.type is at.IdentifierType.IP:
        return x509.IPAddress(ipaddress.ip_address(ident.value))
    return x509.DNSName(ident.value)


def _identifier(kind: str, value: str) -> at.Identifier:
    if kind == "ip":
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise EngineError(
                ProblemKind.MALFORMED,
                f"{value!r} is not an IP address",
                subproblems=(
                    SubProblem(ProblemKind.MALFORMED, "not an IP address", f"ip:{value}"),
                ),
            ) from None
        if str(addr) != value:
            raise EngineError(
                ProblemKind.MALFORMED, f"IP identifiers must be canonical ({addr}, not {value})"
            )
        return at.Identifier(at.IdentifierType.IP, value)
    if kind == "dns":
        return at.Identifier(at.IdentifierType.DNS, value)
    raise EngineError(
        ProblemKind.UNSUPPORTED_IDENTIFIER,
        f"identifier type {kind!r} is not supported (dns, ip)",
        subproblems=(
            SubProblem(ProblemKind.UNSUPPORTED_IDENTIFIER, f"type {kind!r}", f"dns:{value}"),
        ),
    )


def audit_identifier(authz: at.Authorization) -> str:
    """Return an authorization's identifier as its audit records name it (``dns:*.x``)."""
    ident = authz.identifier
    shown = f"*.{ident.value}" if authz.wildcard else ident.value
    return f"{ident.type}:{shown}"


def derive_authz(authz: at.Authorization, now: datetime) -> at.Authorization:
    """Return the authorization with its status as of ``now`` (expiry, RFC 8555 §7.1.6)."""
    if authz.status in (at.AuthzStatus.PENDING, at.AuthzStatus.VALID) and authz.expires <= now:
        return replace(authz, status=at.AuthzStatus.EXPIRED)
    return authz


def derive_order(order: at.Order, now: datetime) -> at.Order:
    """Compute an order's status from its authorizations (RFC 8555 §7.1.6)."""
    authzs = tuple(derive_authz(a, now) for a in order.authorizations)
    order = replace(order, authorizations=authzs)
    if order.status is not at.OrderStatus.PENDING:
        return order
    if order.expires <= now or len(authzs) != len(order.authz_ids):
        return replace(order, status=at.OrderStatus.INVALID)
    if any(a.status in _DEAD_AUTHZ for a in authzs):
        return replace(order, status=at.OrderStatus.INVALID)
    if all(a.status is at.AuthzStatus.VALID for a in authzs):
        return replace(order, status=at.OrderStatus.READY)
    return order


class Orders:
    """Orders, their authorizations and the challenges that validate them."""

    def __init__(
        self,
        engine: CAEngine,
        repo: AcmeRepository,
        *,
        ports: validation.ValidationPorts,
        settings: AcmeSettings,
        clock: Clock,
        renewal: Renewal,
        queue: ValidationQueue | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._ports = ports
        self._settings = settings
        self._clock = clock
        self._renewal = renewal
        self._limit = RateLimiter(repo, clock, settings.orders_per_account_per_hour)
        self._queue = (
            queue
            if queue is not None
            else ValidationQueue(
                limit=settings.validation_queue, concurrency=settings.validation_concurrency
            )
        )

    @property
    def settings(self) -> AcmeSettings:
        """The directory's settings (its CA and grant are the issuance pipeline's input)."""
        return self._settings

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Cancel validation still running (called on shutdown)."""
        await self._queue.close()

    async def wait_idle(self) -> None:
        """Wait until every background validation has finished (tests, shutdown)."""
        await self._queue.wait_idle()

    # ------------------------------------------------------------ profiles

    def engine_profile(self, acme_profile: str | None) -> str:
        """Map an ACME profile name to the engine's. Raises: EngineError INVALID_PROFILE."""
        name = acme_profile or self._settings.default_profile
        mapped = self._settings.profiles.get(name)
        if mapped is None:
            known = ", ".join(sorted(self._settings.profiles))
            raise EngineError(ProblemKind.INVALID_PROFILE, f"unknown profile {name!r} ({known})")
        return mapped

    def acme_profile(self, engine_profile: str) -> str:
        """Return the ACME name of an engine profile (for order objects)."""
        for name, mapped in self._settings.profiles.items():
            if mapped == engine_profile:
                return name
        return engine_profile

    def profiles(self) -> dict[str, str]:
        """Return the ACME profiles with their descriptions (directory meta)."""
        return {
            name: self._engine.profile(engine).description
            for name, engine in self._settings.profiles.items()
        }

    # ------------------------------------------------------------ identifiers

    async def check_identifiers(
        self, account: at.Account, raw: Sequence[tuple[str, str]], *, profile: str
    ) -> tuple[at.Identifier, ...]:
        """Parse identifiers and apply the CA's identifier policy (rejectedIdentifier).

        Raises:
            EngineError: MALFORMED, UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER.
        """
        if not raw:
            raise EngineError(ProblemKind.MALFORMED, "an order needs at least one identifier")
        if len(raw) > self._settings.max_identifiers:
            raise EngineError(
                ProblemKind.REJECTED_IDENTIFIER,
                f"at most {self._settings.max_identifiers} identifiers per order",
            )
        idents: list[at.Identifier] = []
        for kind, value in raw:
            ident = _identifier(kind, value)
            if ident not in idents:
                idents.append(ident)
        bad = [
            SubProblem(
                ProblemKind.REJECTED_IDENTIFIER,
                f"{i.value!r} is not a valid lower-case DNS name (IDNs as A-labels)",
                f"dns:{i.value}",
            )
            for i in idents
            if i.type is at.IdentifierType.DNS
            and not (i.value.isascii() and policy.is_valid_dns_name(i.value))
        ]
        checks = self._settings.validation
        if not checks.resolve_all_to:
            # Validation would connect to the identifier itself: no loopback,
            # link-local, unspecified or multicast targets (SSRF).
            bad += [
                SubProblem(
                    ProblemKind.REJECTED_IDENTIFIER,
                    f"{i.value} is not a permitted validation target",
                    f"ip:{i.value}",
                )
                for i in idents
                if i.type is at.IdentifierType.IP
                and not validation.target_permitted(i.value, checks)
            ]
        if bad:
            detail = bad[0].detail if len(bad) == 1 else f"{len(bad)} identifiers refused"
            raise EngineError(ProblemKind.REJECTED_IDENTIFIER, detail, subproblems=tuple(bad))
        # The issuance pipeline's own checks, before anything is validated.
        await self._engine.check_request(
            Principal("acme", account.id),
            self._settings.grant,
            ca=self._settings.ca,
            profile=profile,
            names=[general_name(i) for i in idents],
            subject=x509.Name([]),
        )
        return tuple(idents)

    # ------------------------------------------------------------ orders

    def _new_authz(self, account: at.Account, ident: at.Identifier) -> at.Authorization:
        wildcard = ident.value.startswith("*.")
        if wildcard:
            kinds: tuple[at.ChallengeType, ...] = (at.ChallengeType.DNS_01,)
        elif ident.type is at.IdentifierType.IP:
            kinds = (at.ChallengeType.HTTP_01, at.ChallengeType.TLS_ALPN_01)
        else:
            kinds = (
                at.ChallengeType.HTTP_01,
                at.ChallengeType.DNS_01,
                at.ChallengeType.TLS_ALPN_01,
            )
        # RFC 8555 §7.1.4: the authorization names the base domain, with "wildcard": true.
        shown = at.Identifier(ident.type, ident.value.removeprefix("*."))
        return at.Authorization(
            id=at.AuthzId(at.new_id()),
            account_id=account.id,
            identifier=shown,
            status=at.AuthzStatus.PENDING,
            expires=self._clock.now() + self._settings.pending_authz_lifetime,
            challenges=tuple(at.Challenge(k, secrets.token_urlsafe(32)) for k in kinds),
            wildcard=wildcard,
        )

    async def new_order(
        self,
        account: at.Account,
        identifiers: Sequence[tuple[str, str]],
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        profile: str | None = None,
        replaces: str | None = None,
        source: str = "",
    ) -> at.Order:
        """Create an order and its authorizations (RFC 8555 §7.4; audited, from ``source``).

        Raises:
            EngineError: MALFORMED, UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER,
                INVALID_PROFILE, RATE_LIMITED (orders per hour, pending authorizations),
                UNAUTHORIZED (replaces a foreign cert), NOT_FOUND (replaces an unknown
                cert), ALREADY_REPLACED.
        """
        engine_profile = self.engine_profile(profile)
        idents = await self.check_identifiers(account, identifiers, profile=engine_profile)
        now = self._clock.now()
        self._check_window(engine_profile, not_before, not_after, now)
        superseding: Sequence[at.OrderId] = ()
        if replaces is not None:
            superseding = await self._check_replaces(account, replaces)
        authzs: list[at.Authorization] = []
        fresh: list[at.Authorization] = []
        for ident in idents:
            reused = None
            if self._settings.authz_reuse:
                reused = await self._repo.find_valid_authz(
                    account.id,
                    at.Identifier(ident.type, ident.value.removeprefix("*.")),
                    now=now,
                    wildcard=ident.value.startswith("*."),
                )
            if reused is None:
                reused = self._new_authz(account, ident)
                fresh.append(reused)
            authzs.append(reused)
        await self._check_pending(account, len(fresh), now)
        # Counted after the checks above: an order they refuse does not use up the hour.
        await self._limit.hit(f"acct:{account.id}", "new orders for this account")
        expires = min([now + self._settings.order_lifetime, *(a.expires for a in authzs)])
        order = at.Order(
            id=at.OrderId(at.new_id()),
            account_id=account.id,
            status=at.OrderStatus.PENDING,
            identifiers=idents,
            authz_ids=tuple(a.id for a in authzs),
            expires=expires,
            created_at=now,
            profile=engine_profile,
            not_before=not_before,
            not_after=not_after,
            replaces=replaces,
            authorizations=tuple(authzs),
        )
        audit = AuditEvent(
            at=now,
            actor=f"acme:{account.id}",
            action="acme.order-create",
            target=order.id,
            detail={
                "identifiers": ",".join(i.value for i in idents),
                "profile": engine_profile,
                **({"replaces": replaces} if replaces else {}),
            },
            source=source,
        )
        await self._repo.add_order(order, fresh, superseding=superseding, audit=audit)
        return derive_order(order, now)

    def _check_window(
        self, profile: str, not_before: datetime | None, not_after: datetime | None, now: datetime
    ) -> None:
        prof = self._engine.profile(profile)
        start = not_before or now
        if not_after is not None:
            if not_after <= start:
                raise EngineError(ProblemKind.MALFORMED, "notAfter must be later than notBefore")
            if not_after <= now:
                raise EngineError(ProblemKind.MALFORMED, "notAfter is in the past")
            if not_after - start > prof.max_lifetime:
                raise EngineError(
                    ProblemKind.MALFORMED,
                    f"the requested validity exceeds {prof.max_lifetime} (profile {prof.name})",
                )
        if not_before is not None and not_before > now + self._settings.order_lifetime:
            raise EngineError(ProblemKind.MALFORMED, "notBefore is too far in the future")

    async def _check_pending(self, account: at.Account, adding: int, now: datetime) -> None:
        limit = self._settings.pending_authzs_per_account
        if limit <= 0 or not adding:
            return
        pending = await self._repo.count_pending_authzs(account.id, now=now)
        if pending + adding > limit:
            raise EngineError(
                ProblemKind.RATE_LIMITED,
                f"too many pending authorizations: at most {limit} per account"
                " (complete or deactivate some)",
                retry_after=_RETRY_AFTER_PENDING,
            )

    async def _check_replaces(self, account: at.Account, cert_id: str) -> list[at.OrderId]:
        """Return the dead orders that named ``cert_id`` (a new order may take their place).

        The repository's replacement slot settles a race between two new orders.
        """
        rec = await self._renewal.find_certificate(cert_id)
        if rec.requester != f"acme:{account.id}":
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "replaces names a certificate of another account"
            )
        now = self._clock.now()
        dead = []
        for order in await self._repo.orders_replacing(cert_id):
            if derive_order(order, now).status is not at.OrderStatus.INVALID:
                # RFC 9773 §5: one live replacement per certificate.
                raise EngineError(
                    ProblemKind.ALREADY_REPLACED,
                    f"order {order.id} already replaces this certificate",
                )
            dead.append(order.id)
        return dead

    async def get_order(self, account: at.Account, order_id: str) -> at.Order:
        """Return an order of this account with its current status.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED (another account's order).
        """
        order = await self._repo.get_order(at.OrderId(order_id))
        if order is None:
            raise EngineError(ProblemKind.NOT_FOUND, "no such order")
        if order.account_id != account.id:
            raise EngineError(ProblemKind.UNAUTHORIZED, "this order belongs to another account")
        return derive_order(order, self._clock.now())

    async def list_orders(self, account: at.Account) -> Sequence[at.OrderId]:
        """Return the account's newest order ids (RFC 8555 §7.1.2.1)."""
        return await self._repo.list_order_ids(account.id, limit=_ORDERS_LISTED)

    @staticmethod
    def retry_after(order: at.Order) -> int | None:
        """Return the Retry-After seconds for an order still being processed."""
        return _RETRY_AFTER_PROCESSING if order.status is at.OrderStatus.PROCESSING else None

    # ------------------------------------------------------------ authorizations

    async def get_authz(self, account: at.Account, authz_id: str) -> at.Authorization:
        """Return an authorization of this account.

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED.
        """
        authz = await self._repo.get_authz(at.AuthzId(authz_id))
        if authz is None:
            raise EngineError(ProblemKind.NOT_FOUND, "no such authorization")
        if authz.account_id != account.id:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "this authorization belongs to another account"
            )
        return derive_authz(authz, self._clock.now())

    async def deactivate_authz(
        self, account: at.Account, authz_id: str, *, source: str = ""
    ) -> at.Authorization:
        """Deactivate a pending or valid authorization (RFC 8555 §7.5.2; audited).

        Raises:
            EngineError: NOT_FOUND, UNAUTHORIZED, MALFORMED (other states).
        """
        authz = await self.get_authz(account, authz_id)
        if authz.status not in (at.AuthzStatus.PENDING, at.AuthzStatus.VALID):
            raise EngineError(
                ProblemKind.MALFORMED,
                f"an authorization that is {authz.status} cannot be deactivated",
            )
        updated = replace(authz, status=at.AuthzStatus.DEACTIVATED)
        audit = self._authz_event(account, updated, "acme.authz-deactivate", source=source)
        await self._repo.save_authz(updated, validating_done=True, audit=audit)
        return updated

    def _authz_event(
        self,
        account: at.Account,
        authz: at.Authorization,
        action: str,
        *,
        source: str,
        detail: dict[str, str] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            at=self._clock.now(),
            actor=f"acme:{account.id}",
            action=action,
            target=authz.id,
            detail={"identifier": audit_identifier(authz), **(detail or {})},
            source=source,
        )

    async def new_authz(
        self, account: at.Account, kind: str, value: str, *, source: str = ""
    ) -> at.Authorization:
        """Pre-authorize an identifier (RFC 8555 §7.4.1; audited, from ``source``).

        Raises:
            EngineError: MALFORMED (wildcards), UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER,
                RATE_LIMITED (pending authorizations).
        """
        if value.startswith("*."):
            raise EngineError(ProblemKind.MALFORMED, "wildcards cannot be pre-authorized")
        (ident,) = await self.check_identifiers(
            account, [(kind, value)], profile=self.engine_profile(None)
        )
        await self._check_pending(account, 1, self._clock.now())
        authz = self._new_authz(account, ident)
        audit = self._authz_event(account, authz, "acme.authz-create", source=source)
        await self._repo.add_authz(authz, audit=audit)
        return authz

    # ------------------------------------------------------------ challenges

    async def respond_challenge(
        self, account: at.Account, authz_id: str, kind: str, *, source: str = ""
    ) -> tuple[at.Authorization, at.Challenge]:
        """Start validating a challenge in the background (RFC 8555 §7.5.1).

        Idempotent: a challenge that is already processing, valid or invalid is
        returned as it is. The result is audited as the account's, from ``source``
        (the address that asked for validation).

        Raises:
            EngineError: NOT_FOUND (no such challenge), UNAUTHORIZED, RATE_LIMITED (the
                process's validation queue is full; the challenge stays pending).
        """
        authz = await self.get_authz(account, authz_id)
        try:
            ctype = at.ChallengeType(kind)
        except ValueError:
            raise EngineError(ProblemKind.NOT_FOUND, "no such challenge") from None
        chall = authz.challenge(ctype)
        if chall is None:
            raise EngineError(ProblemKind.NOT_FOUND, "no such challenge")
        if (
            authz.status is not at.AuthzStatus.PENDING
            or chall.status is not at.ChallengeStatus.PENDING
        ):
            return authz, chall
        self._queue.check_room()
        started = replace(chall, status=at.ChallengeStatus.PROCESSING)
        updated = replace(
            authz, challenges=tuple(started if c.type is ctype else c for c in authz.challenges)
        )
        if not await self._repo.claim_challenge(authz.id, updated, since=self._clock.now()):
            current = await self.get_authz(account, authz_id)
            return current, current.challenge(ctype) or chall
        self._queue.submit(lambda: self._validate(account, updated, started, source))
        return updated, started

    async def _validate(
        self, account: at.Account, authz: at.Authorization, chall: at.Challenge, source: str
    ) -> None:
        try:
            problem = await validation.validate(
                chall.type,
                authz.identifier,
                token=chall.token,
                thumbprint=account.key.thumbprint,
                ports=self._ports,
                settings=self._settings.validation,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # task supervisor: record the failure, never crash
            log.exception("validation of %s failed unexpectedly", authz.id)
            problem = at.StoredProblem(ProblemKind.SERVER_INTERNAL, "validation failed")
        now = self._clock.now()
        if problem is None:
            done = replace(chall, status=at.ChallengeStatus.VALID, validated=now)
            final = replace(
                authz,
                status=at.AuthzStatus.VALID,
                expires=now + self._settings.valid_authz_lifetime,
                challenges=tuple(done if c.type is chall.type else c for c in authz.challenges),
            )
        else:
            done = replace(chall, status=at.ChallengeStatus.INVALID, error=problem)
            final = replace(
                authz,
                status=at.AuthzStatus.INVALID,
                challenges=tuple(done if c.type is chall.type else c for c in authz.challenges),
            )
        # The problem's kind only: its detail may name what the target served.
        result = {"challenge": str(chall.type), "result": str(final.status)}
        if problem is not None:
            result["error"] = str(problem.kind)
        audit = self._authz_event(
            account, final, "acme.authz-validate", source=source, detail=result
        )
        try:
            # Only while still claimed: a deactivation, or recovery of a claim it took
            # for dead (server.ca.acme.recovery), ended it and stays final.
            if not await self._repo.save_authz(
                final, validating_done=True, audit=audit, claimed=True
            ):
                log.warning("validation of %s ended after its claim did", authz.id)
        except Exception:  # task supervisor: keep the server alive
            log.exception("could not store the validation result of %s", authz.id)
