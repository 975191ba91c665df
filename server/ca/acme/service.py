"""The ACME state machine: accounts, orders, authorizations, challenges, finalize, revoke.

Orchestrates nonces, validation, identifier policy and issuance (through
``CAEngine``) over the ``AcmeRepository`` port. Decides every status, lifetime,
limit and authorization; the front end only parses and renders. Must not import
aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import policy
from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.nonces import NonceService
from server.ca.acme.ports import AcmeRepository
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind, SubProblem
from server.ca.ports import Clock, SystemClock
from server.ca.types import (
    CertificateRecord,
    CertQuery,
    CertStatus,
    Principal,
    RevocationReason,
    Serial,
)

__all__ = ["AcmeService", "AcmeSettings", "RenewalWindow", "cert_id_of"]

log = logging.getLogger(__name__)

_MAX_CONTACTS: Final = 10
_ORDERS_LISTED: Final = 1000
_RETRY_AFTER_PROCESSING: Final = 1
_ARI_RETRY_AFTER: Final = 6 * 3600
_ISSUED_CACHE: Final = 4096
_CSR_KINDS: Final = frozenset(
    {
        ProblemKind.BAD_CSR,
        ProblemKind.BAD_PUBLIC_KEY,
        ProblemKind.BAD_SIGNATURE_ALGORITHM,
        ProblemKind.REJECTED_IDENTIFIER,
        ProblemKind.MALFORMED,
    }
)
_DEAD_AUTHZ: Final = frozenset(
    {
        at.AuthzStatus.INVALID,
        at.AuthzStatus.DEACTIVATED,
        at.AuthzStatus.EXPIRED,
        at.AuthzStatus.REVOKED,
    }
)


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    """ACME policy, validated by ``server.config`` before it gets here."""

    eab_required: bool = False
    authz_reuse: bool = True
    orders_per_account_per_hour: int = 0
    accounts_per_ip_per_hour: int = 0
    order_lifetime: timedelta = timedelta(days=7)
    pending_authz_lifetime: timedelta = timedelta(days=7)
    valid_authz_lifetime: timedelta = timedelta(days=30)
    nonce_lifetime: timedelta = timedelta(hours=1)
    account_cache_seconds: float = 5.0
    max_identifiers: int = 100
    validation_concurrency: int = 32
    # ACME profile name (draft-aaron-acme-profiles) -> engine profile name.
    profiles: Mapping[str, str] = field(
        default_factory=lambda: {"tls-server": "tls-server", "shortlived": "short-lived"}
    )
    default_profile: str = "tls-server"
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    validation: validation.ValidationSettings = field(default_factory=validation.ValidationSettings)


@dataclass(frozen=True, slots=True)
class RenewalWindow:
    """ARI suggested window (RFC 9773 §4.2)."""

    start: datetime
    end: datetime
    retry_after: int


class _RateLimiter:
    """Fixed one-hour windows per key, counted in the database (shared by every node)."""

    def __init__(self, repo: AcmeRepository, clock: Clock, limit: int) -> None:
        self._repo = repo
        self._clock = clock
        self._limit = limit

    async def hit(self, key: str, what: str) -> None:
        if self._limit <= 0:
            return
        now = self._clock.now()
        start = now.replace(minute=0, second=0, microsecond=0)
        if not await self._repo.hit_rate_limit(key, window_start=start, limit=self._limit):
            retry = int((start + timedelta(hours=1) - now).total_seconds()) + 1
            raise EngineError(
                ProblemKind.RATE_LIMITED,
                f"too many {what}: at most {self._limit} per hour",
                retry_after=retry,
            )


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(value: str) -> bytes:
    if "=" in value or any(c in value for c in "+/"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def cert_id_of(cert: x509.Certificate) -> str:
    """Return the ARI certificate identifier (RFC 9773 §4.1): AKI keyId '.' serial."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    der = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return f"{_b64u(aki.key_identifier or b'')}.{_b64u(der)}"


def _cert_query(serial: int) -> CertQuery:
    return CertQuery(serial=Serial(serial), limit=10)


def _general_name(ident: at.Identifier) -> x509.GeneralName:
    if ident.type is at.IdentifierType.IP:
        return x509.IPAddress(ipaddress.ip_address(ident.value))
    return x509.DNSName(ident.value)


def _check_contact(contact: Sequence[str]) -> tuple[str, ...]:
    if len(contact) > _MAX_CONTACTS:
        raise EngineError(ProblemKind.INVALID_CONTACT, f"at most {_MAX_CONTACTS} contacts")
    out = []
    for c in contact:
        if not c.startswith("mailto:"):
            raise EngineError(
                ProblemKind.UNSUPPORTED_CONTACT, f"only mailto: contacts are supported: {c!r}"
            )
        addr = c.removeprefix("mailto:")
        local, at_sign, domain = addr.partition("@")
        if (
            not at_sign
            or not local
            or "@" in domain
            or any(ch in addr for ch in '?,; <>"\n\r\t')
            or not policy.is_valid_dns_name(domain.lower(), allow_wildcard=False)
        ):
            raise EngineError(ProblemKind.INVALID_CONTACT, f"invalid contact {c!r}")
        out.append(c)
    return tuple(out)


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


class AcmeService:
    """ACME accounts, orders and the path from challenge to certificate."""

    def __init__(
        self,
        engine: CAEngine,
        repo: AcmeRepository,
        *,
        ports: validation.ValidationPorts,
        settings: AcmeSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._ports = ports
        self.settings = settings or AcmeSettings()
        self._clock = clock or SystemClock()
        self.nonces = NonceService(repo, self._clock, lifetime=self.settings.nonce_lifetime)
        self._accounts: dict[at.AccountId, tuple[float, at.Account]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._validation_slots = asyncio.Semaphore(max(1, self.settings.validation_concurrency))
        self._order_limit = _RateLimiter(
            repo, self._clock, self.settings.orders_per_account_per_hour
        )
        self._account_limit = _RateLimiter(
            repo, self._clock, self.settings.accounts_per_ip_per_hour
        )
        self._constraints: dict[str, tuple[x509.NameConstraints, ...]] = {}
        self._issued: dict[
            str, tuple[at.AccountId, x509.Certificate, tuple[x509.Certificate, ...]]
        ] = {}

    def _now(self) -> datetime:
        return self._clock.now()

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Cancel validation still running (called on shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until every background validation has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------ nonces

    async def new_nonce(self) -> str:
        """Return a fresh replay nonce."""
        return await self.nonces.issue()

    async def use_nonce(self, nonce: str) -> None:
        """Consume a nonce once (any node). Raises: EngineError BAD_NONCE."""
        await self.nonces.consume(nonce)

    # ------------------------------------------------------------ accounts

    def _cache(self, account: at.Account) -> None:
        if len(self._accounts) > 50_000:
            self._accounts.clear()
        self._accounts[account.id] = (time.monotonic(), account)

    async def account(self, account_id: str) -> at.Account:
        """Return a valid account by id (cached for a few seconds).

        Raises:
            EngineError: ACCOUNT_DOES_NOT_EXIST, UNAUTHORIZED (deactivated or revoked).
        """
        aid = at.AccountId(account_id)
        cached = self._accounts.get(aid)
        if (
            cached is not None
            and time.monotonic() - cached[0] < self.settings.account_cache_seconds
        ):
            found: at.Account | None = cached[1]
        else:
            found = await self._repo.get_account(aid)
            if found is not None:
                self._cache(found)
        if found is None:
            raise EngineError(ProblemKind.ACCOUNT_DOES_NOT_EXIST, "no account with this key id")
        if found.status is not at.AccountStatus.VALID:
            raise EngineError(ProblemKind.UNAUTHORIZED, f"the account is {found.status}")
        return found

    async def find_account(self, thumbprint: str) -> at.Account | None:
        """Return the account holding a key, if any."""
        return await self._repo.get_account_by_thumbprint(thumbprint)

    def _check_eab(self, key: at.EabKey | None, binding: at.EabBinding) -> None:
        if key is None or key.revoked:
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "unknown or revoked external account key id"
            )
        mac = hmac.new(key.hmac_key, binding.signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, binding.signature):
            raise EngineError(ProblemKind.UNAUTHORIZED, "the external account binding MAC is wrong")

    async def new_account(
        self,
        key: at.AccountKey,
        *,
        contact: Sequence[str] = (),
        tos_agreed: bool = False,
        only_return_existing: bool = False,
        eab: at.EabBinding | None = None,
        client: str = "",
    ) -> tuple[at.Account, bool]:
        """Create an account or return the existing one for this key (RFC 8555 §7.3).

        Returns:
            The account and True when it was created now.

        Raises:
            EngineError: ACCOUNT_DOES_NOT_EXIST (onlyReturnExisting), UNAUTHORIZED
                (deactivated account, bad EAB), EXTERNAL_ACCOUNT_REQUIRED,
                INVALID_CONTACT, UNSUPPORTED_CONTACT, MALFORMED (terms not agreed),
                RATE_LIMITED.
        """
        existing = await self._repo.get_account_by_thumbprint(key.thumbprint)
        if existing is not None:
            if existing.status is not at.AccountStatus.VALID:
                raise EngineError(ProblemKind.UNAUTHORIZED, f"the account is {existing.status}")
            return existing, False
        if only_return_existing:
            raise EngineError(ProblemKind.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
        contacts = _check_contact(contact)
        if self.settings.terms_of_service and not tos_agreed:
            raise EngineError(ProblemKind.MALFORMED, "you must agree to the terms of service")
        if eab is None and self.settings.eab_required:
            raise EngineError(
                ProblemKind.EXTERNAL_ACCOUNT_REQUIRED, "this server requires externalAccountBinding"
            )
        if eab is not None:
            self._check_eab(await self._repo.get_eab_key(eab.kid), eab)
        await self._account_limit.hit(f"ip:{client}", "new accounts from this address")
        account = at.Account(
            id=at.AccountId(_new_id()),
            status=at.AccountStatus.VALID,
            key=key,
            contact=contacts,
            tos_agreed=tos_agreed,
            created_at=self._now(),
            eab_kid=eab.kid if eab else None,
        )
        stored = await self._repo.add_account(account)
        self._cache(stored)
        return stored, stored.id == account.id

    async def update_account(
        self, account: at.Account, *, contact: Sequence[str] | None, deactivate: bool
    ) -> at.Account:
        """Change contacts or deactivate (RFC 8555 §7.3.2, §7.3.6).

        Raises:
            EngineError: INVALID_CONTACT, UNSUPPORTED_CONTACT.
        """
        updated = account
        if contact is not None:
            updated = replace(updated, contact=_check_contact(contact))
        if deactivate:
            updated = replace(updated, status=at.AccountStatus.DEACTIVATED)
        if updated != account:
            await self._repo.update_account(updated)
            self._cache(updated)
        return updated

    async def change_key(self, account: at.Account, new_key: at.AccountKey) -> at.Account:
        """Roll the account over to ``new_key`` (RFC 8555 §7.3.5).

        Raises:
            EngineError: CONFLICT when another account holds the new key.
        """
        updated = replace(account, key=new_key)
        if not await self._repo.update_account(updated):
            raise EngineError(ProblemKind.CONFLICT, "the new key is already in use")
        self._cache(updated)
        return updated

    # ------------------------------------------------------------ orders

    def engine_profile(self, acme_profile: str | None) -> str:
        """Map an ACME profile name to the engine's. Raises: EngineError INVALID_PROFILE."""
        name = acme_profile or self.settings.default_profile
        mapped = self.settings.profiles.get(name)
        if mapped is None:
            known = ", ".join(sorted(self.settings.profiles))
            raise EngineError(ProblemKind.INVALID_PROFILE, f"unknown profile {name!r} ({known})")
        return mapped

    def acme_profile(self, engine_profile: str) -> str:
        """Return the ACME name of an engine profile (for order objects)."""
        for name, mapped in self.settings.profiles.items():
            if mapped == engine_profile:
                return name
        return engine_profile

    def profiles(self) -> dict[str, str]:
        """Return the ACME profiles with their descriptions (directory meta)."""
        return {
            name: self._engine.profile(engine).description
            for name, engine in self.settings.profiles.items()
        }

    async def _name_constraints(self) -> tuple[x509.NameConstraints, ...]:
        ca = await self._engine.get_ca(None)
        cached = self._constraints.get(ca.id)
        if cached is None:
            out = []
            for cert in await self._engine.chain_of(ca):
                try:
                    out.append(cert.extensions.get_extension_for_class(x509.NameConstraints).value)
                except x509.ExtensionNotFound:
                    continue
            cached = self._constraints[ca.id] = tuple(out)
        return cached

    async def check_identifiers(
        self, raw: Sequence[tuple[str, str]], *, profile: str
    ) -> tuple[at.Identifier, ...]:
        """Parse identifiers and apply the CA's identifier policy (rejectedIdentifier).

        Raises:
            EngineError: MALFORMED, UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER.
        """
        if not raw:
            raise EngineError(ProblemKind.MALFORMED, "an order needs at least one identifier")
        if len(raw) > self.settings.max_identifiers:
            raise EngineError(
                ProblemKind.REJECTED_IDENTIFIER,
                f"at most {self.settings.max_identifiers} identifiers per order",
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
        if bad:
            detail = bad[0].detail if len(bad) == 1 else f"{len(bad)} identifiers refused"
            raise EngineError(ProblemKind.REJECTED_IDENTIFIER, detail, subproblems=tuple(bad))
        names = [_general_name(i) for i in idents]
        prof = self._engine.profile(profile)
        ca = await self._engine.get_ca(None)
        policy.check_names(
            names,
            profile=prof,
            dns_suffixes=ca.allowed_dns_suffixes,
            ip_networks=ca.allowed_ip_networks,
        )
        policy.check_name_constraints(names, await self._name_constraints())
        return tuple(idents)

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
            id=at.AuthzId(_new_id()),
            account_id=account.id,
            identifier=shown,
            status=at.AuthzStatus.PENDING,
            expires=self._now() + self.settings.pending_authz_lifetime,
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
    ) -> at.Order:
        """Create an order and its authorizations (RFC 8555 §7.4).

        Raises:
            EngineError: MALFORMED, UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER,
                INVALID_PROFILE, RATE_LIMITED, UNAUTHORIZED (replaces a foreign cert).
        """
        engine_profile = self.engine_profile(profile)
        idents = await self.check_identifiers(identifiers, profile=engine_profile)
        now = self._now()
        self._check_window(engine_profile, not_before, not_after, now)
        if replaces is not None:
            await self._check_replaces(account, replaces)
        await self._order_limit.hit(f"acct:{account.id}", "new orders for this account")
        authzs: list[at.Authorization] = []
        fresh: list[at.Authorization] = []
        for ident in idents:
            reused = None
            if self.settings.authz_reuse:
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
        expires = min([now + self.settings.order_lifetime, *(a.expires for a in authzs)])
        order = at.Order(
            id=at.OrderId(_new_id()),
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
        await self._repo.add_order(order, fresh)
        return self._derive(order, now)

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
        if not_before is not None and not_before > now + self.settings.order_lifetime:
            raise EngineError(ProblemKind.MALFORMED, "notBefore is too far in the future")

    async def _check_replaces(self, account: at.Account, cert_id: str) -> None:
        rec = await self._record_by_cert_id(cert_id)
        if rec.requester != f"acme:{account.id}":
            raise EngineError(
                ProblemKind.UNAUTHORIZED, "replaces names a certificate of another account"
            )

    def _derive_authz(self, authz: at.Authorization, now: datetime) -> at.Authorization:
        if authz.status in (at.AuthzStatus.PENDING, at.AuthzStatus.VALID) and authz.expires <= now:
            return replace(authz, status=at.AuthzStatus.EXPIRED)
        return authz

    def _derive(self, order: at.Order, now: datetime) -> at.Order:
        """Compute an order's status from its authorizations (RFC 8555 §7.1.6)."""
        authzs = tuple(self._derive_authz(a, now) for a in order.authorizations)
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
        return self._derive(order, self._now())

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
        return self._derive_authz(authz, self._now())

    async def deactivate_authz(self, account: at.Account, authz_id: str) -> at.Authorization:
        """Deactivate a pending or valid authorization (RFC 8555 §7.5.2).

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
        await self._repo.save_authz(updated, validating_done=True)
        return updated

    async def new_authz(self, account: at.Account, kind: str, value: str) -> at.Authorization:
        """Pre-authorize an identifier (RFC 8555 §7.4.1).

        Raises:
            EngineError: MALFORMED (wildcards), UNSUPPORTED_IDENTIFIER, REJECTED_IDENTIFIER.
        """
        if value.startswith("*."):
            raise EngineError(ProblemKind.MALFORMED, "wildcards cannot be pre-authorized")
        (ident,) = await self.check_identifiers([(kind, value)], profile=self.engine_profile(None))
        authz = self._new_authz(account, ident)
        await self._repo.add_authz(authz)
        return authz

    async def respond_challenge(
        self, account: at.Account, authz_id: str, kind: str
    ) -> tuple[at.Authorization, at.Challenge]:
        """Start validating a challenge in the background (RFC 8555 §7.5.1).

        Idempotent: a challenge that is already processing, valid or invalid is
        returned as it is.

        Raises:
            EngineError: NOT_FOUND (no such challenge), UNAUTHORIZED.
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
        started = replace(chall, status=at.ChallengeStatus.PROCESSING)
        updated = replace(
            authz, challenges=tuple(started if c.type is ctype else c for c in authz.challenges)
        )
        if not await self._repo.claim_challenge(authz.id, updated):
            current = await self.get_authz(account, authz_id)
            return current, current.challenge(ctype) or chall
        task = asyncio.create_task(self._validate(updated, started, account.key.thumbprint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return updated, started

    async def _validate(
        self, authz: at.Authorization, chall: at.Challenge, thumbprint: str
    ) -> None:
        try:
            async with self._validation_slots:
                ident = authz.identifier
                problem = await validation.validate(
                    chall.type,
                    ident,
                    token=chall.token,
                    thumbprint=thumbprint,
                    ports=self._ports,
                    settings=self.settings.validation,
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # task supervisor: record the failure, never crash
            log.exception("validation of %s failed unexpectedly", authz.id)
            problem = at.StoredProblem(ProblemKind.SERVER_INTERNAL, "validation failed")
        now = self._now()
        if problem is None:
            done = replace(chall, status=at.ChallengeStatus.VALID, validated=now)
            final = replace(
                authz,
                status=at.AuthzStatus.VALID,
                expires=now + self.settings.valid_authz_lifetime,
                challenges=tuple(done if c.type is chall.type else c for c in authz.challenges),
            )
        else:
            done = replace(chall, status=at.ChallengeStatus.INVALID, error=problem)
            final = replace(
                authz,
                status=at.AuthzStatus.INVALID,
                challenges=tuple(done if c.type is chall.type else c for c in authz.challenges),
            )
        try:
            await self._repo.save_authz(final, validating_done=True)
        except Exception:  # task supervisor: keep the server alive
            log.exception("could not store the validation result of %s", authz.id)

    # ------------------------------------------------------------ finalize and certificates

    async def finalize(self, account: at.Account, order_id: str, csr: bytes) -> at.Order:
        """Issue the certificate of a ready order (RFC 8555 §7.4).

        A refused CSR leaves the order ready so the client may try again.

        Raises:
            EngineError: ORDER_NOT_READY, BAD_CSR, BAD_PUBLIC_KEY, REJECTED_IDENTIFIER,
                MALFORMED, NOT_FOUND, UNAUTHORIZED.
        """
        order = await self.get_order(account, order_id)
        if order.status is not at.OrderStatus.READY:
            raise EngineError(
                ProblemKind.ORDER_NOT_READY, f"the order is {order.status}, not ready"
            )
        if not await self._repo.claim_order(order.id, frm=at.OrderStatus.PENDING):
            raise EngineError(ProblemKind.ORDER_NOT_READY, "the order is already being finalized")
        try:
            issued = await self._engine.issue(
                csr,
                principal=Principal("acme", account.id),
                profile=order.profile,
                names=[_general_name(i) for i in order.identifiers],
                not_before=order.not_before,
                not_after=order.not_after,
            )
        except EngineError as exc:
            if exc.kind in _CSR_KINDS:
                await self._repo.finish_order(
                    order.id, status=at.OrderStatus.PENDING, cert_ref=None, error=None
                )
            else:
                await self._repo.finish_order(
                    order.id,
                    status=at.OrderStatus.INVALID,
                    cert_ref=None,
                    error=at.StoredProblem(exc.kind, exc.detail, exc.subproblems),
                )
            raise
        except BaseException:
            await self._repo.finish_order(
                order.id,
                status=at.OrderStatus.INVALID,
                cert_ref=None,
                error=at.StoredProblem(ProblemKind.SERVER_INTERNAL, "issuance failed"),
            )
            raise
        ref = f"{issued.record.ca_id}-{issued.record.serial_hex}"
        await self._repo.finish_order(
            order.id, status=at.OrderStatus.VALID, cert_ref=ref, error=None
        )
        # Clients download right after finalizing, usually from this node: keep the chain.
        if len(self._issued) >= _ISSUED_CACHE:
            self._issued.pop(next(iter(self._issued)))
        self._issued[ref] = (account.id, issued.certificate, issued.chain)
        return replace(order, status=at.OrderStatus.VALID, cert_ref=ref)

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

    # ------------------------------------------------------------ revocation

    async def revoke(
        self,
        cert_der: bytes,
        *,
        reason_code: int | None,
        account: at.Account | None = None,
        key_spki: bytes | None = None,
    ) -> None:
        """Revoke by the issuing account or by the certificate's own key (RFC 8555 §7.6).

        Raises:
            EngineError: MALFORMED (not a certificate), NOT_FOUND, UNAUTHORIZED,
                ALREADY_REVOKED, BAD_REVOCATION_REASON.
        """
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise EngineError(
                ProblemKind.MALFORMED, "certificate is not a DER certificate"
            ) from None
        try:
            reason = RevocationReason.from_code(0 if reason_code is None else reason_code)
        except ValueError:
            raise EngineError(
                ProblemKind.BAD_REVOCATION_REASON, f"unknown reason code {reason_code}"
            ) from None
        if reason in (
            RevocationReason.REMOVE_FROM_CRL,
            RevocationReason.CA_COMPROMISE,
            RevocationReason.AA_COMPROMISE,
            RevocationReason.CERTIFICATE_HOLD,
        ):
            raise EngineError(
                ProblemKind.BAD_REVOCATION_REASON, f"reason {reason} is not accepted over ACME"
            )
        recs = await self._engine.find_certificates(_cert_query(cert.serial_number))
        rec = next((r for r in recs if r.der == cert_der), None)
        if rec is None:
            raise EngineError(ProblemKind.NOT_FOUND, "this server did not issue that certificate")
        if account is not None:
            if rec.requester != f"acme:{account.id}":
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "this account did not request that certificate"
                )
        else:
            spki = cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if key_spki is None or spki != key_spki:
                raise EngineError(
                    ProblemKind.UNAUTHORIZED, "the request is not signed by the certificate's key"
                )
        if rec.status is CertStatus.REVOKED:
            raise EngineError(ProblemKind.ALREADY_REVOKED, "the certificate is already revoked")
        principal = Principal("acme", account.id if account else "certificate-key")
        await self._engine.revoke(rec.serial, principal=principal, reason=reason, ca=rec.ca_id)

    # ------------------------------------------------------------ ARI

    async def _record_by_cert_id(self, cert_id: str) -> CertificateRecord:
        aki_b64, dot, serial_b64 = cert_id.partition(".")
        try:
            if not dot or not aki_b64 or not serial_b64:
                raise ValueError("no dot")
            aki = _b64u_decode(aki_b64)
            serial = int.from_bytes(_b64u_decode(serial_b64), "big")
        except (ValueError, binascii.Error):
            raise EngineError(
                ProblemKind.MALFORMED, "the certificate identifier is not AKI.serial (RFC 9773)"
            ) from None
        for rec in await self._engine.find_certificates(_cert_query(serial)):
            ca = await self._engine.get_ca(rec.ca_id)
            ski = x509.SubjectKeyIdentifier.from_public_key(ca.certificate.public_key()).digest
            if ski == aki:
                return rec
        raise EngineError(ProblemKind.NOT_FOUND, "no certificate with that identifier")

    async def renewal_info(self, cert_id: str) -> RenewalWindow:
        """Return the suggested renewal window of a certificate (RFC 9773 §4.2).

        Two thirds into the lifetime for a sixth of it; revoked: renew now.

        Raises:
            EngineError: MALFORMED (bad identifier), NOT_FOUND.
        """
        rec = await self._record_by_cert_id(cert_id)
        now = self._now()
        if rec.status is CertStatus.REVOKED:
            return RenewalWindow(now - timedelta(hours=1), now, _ARI_RETRY_AFTER)
        lifetime = rec.not_after - rec.not_before
        start = rec.not_before + lifetime * 2 / 3
        end = start + lifetime / 6
        return RenewalWindow(
            start.replace(microsecond=0), end.replace(microsecond=0), _ARI_RETRY_AFTER
        )

    # ------------------------------------------------------------ EAB

    async def create_eab_key(self) -> at.EabKey:
        """Create an External Account Binding key (HS256, 256 bits)."""
        key = at.EabKey(
            kid=secrets.token_urlsafe(16), hmac_key=secrets.token_bytes(32), created_at=self._now()
        )
        await self._repo.add_eab_key(key)
        return key

    async def list_eab_keys(self) -> Sequence[at.EabKey]:
        """Return every EAB key."""
        return await self._repo.list_eab_keys()

    async def revoke_eab_key(self, kid: str) -> None:
        """Revoke an EAB key. Raises: EngineError NOT_FOUND."""
        if not await self._repo.revoke_eab_key(kid):
            raise EngineError(ProblemKind.NOT_FOUND, f"no EAB key {kid!r}")
