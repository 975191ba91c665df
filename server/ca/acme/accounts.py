"""ACME accounts (RFC 8555 §7.3): creation, contacts, key change, EAB keys and binding.

Decides who may hold an account: contact rules, terms agreement, External
Account Binding (§7.3.4; a key admits one account unless ``eab_reuse``; creation,
binding and revocation are audited) and the per-address creation limit. Must not import
aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from server.ca import policy
from server.ca.acme import types as at
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.ratelimit import RateLimiter
from server.ca.acme.settings import AcmeSettings
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock
from server.ca.types import AuditEvent, Principal

__all__ = ["Accounts", "check_contact", "check_eab_binding"]

_MAX_CONTACTS: Final = 10
_CACHED_ACCOUNTS: Final = 50_000


def check_contact(contact: Sequence[str]) -> tuple[str, ...]:
    """Return the contacts if every one is a plain ``mailto:`` address.

    Raises:
        EngineError: INVALID_CONTACT, UNSUPPORTED_CONTACT.
    """
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


def check_eab_binding(key: at.EabKey | None, binding: at.EabBinding) -> None:
    """Check an EAB inner JWS's MAC against the stored key (RFC 8555 §7.3.4).

    Raises:
        EngineError: UNAUTHORIZED (unknown or revoked kid, wrong MAC).
    """
    if key is None or key.revoked:
        raise EngineError(ProblemKind.UNAUTHORIZED, "unknown or revoked external account key id")
    mac = hmac.new(key.hmac_key, binding.signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, binding.signature):
        raise EngineError(ProblemKind.UNAUTHORIZED, "the external account binding MAC is wrong")


class Accounts:
    """ACME accounts and the EAB keys that admit them."""

    def __init__(self, repo: AcmeRepository, clock: Clock, settings: AcmeSettings) -> None:
        self._repo = repo
        self._clock = clock
        self._settings = settings
        self._cached: dict[at.AccountId, tuple[float, at.Account]] = {}
        self._limit = RateLimiter(repo, clock, settings.accounts_per_ip_per_hour)

    def _cache(self, account: at.Account) -> None:
        if len(self._cached) > _CACHED_ACCOUNTS:
            self._cached.clear()
        self._cached[account.id] = (time.monotonic(), account)

    async def account(self, account_id: str) -> at.Account:
        """Return a valid account by id (cached for a few seconds).

        Raises:
            EngineError: ACCOUNT_DOES_NOT_EXIST, UNAUTHORIZED (deactivated or revoked).
        """
        aid = at.AccountId(account_id)
        cached = self._cached.get(aid)
        if (
            cached is not None
            and time.monotonic() - cached[0] < self._settings.account_cache_seconds
        ):
            found: at.Account | None = cached[1]
        else:
            found = await self._repo.get_account(aid)
            if found is not None:
                self._cache(found)
        if found is None or found.directory != self._settings.directory:
            # An account exists only in the directory it was created in.
            raise EngineError(ProblemKind.ACCOUNT_DOES_NOT_EXIST, "no account with this key id")
        if found.status is not at.AccountStatus.VALID:
            raise EngineError(ProblemKind.ACCOUNT_NOT_VALID, f"the account is {found.status}")
        return found

    async def find_account(self, thumbprint: str) -> at.Account | None:
        """Return this directory's account holding a key, if any."""
        found = await self._repo.get_account_by_thumbprint(thumbprint)
        return found if found is not None and found.directory == self._settings.directory else None

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
            EngineError: ACCOUNT_DOES_NOT_EXIST (onlyReturnExisting), ACCOUNT_NOT_VALID
                (deactivated account), UNAUTHORIZED (bad, revoked or used-up EAB key),
                EXTERNAL_ACCOUNT_REQUIRED,
                INVALID_CONTACT, UNSUPPORTED_CONTACT, MALFORMED (terms not agreed),
                RATE_LIMITED, UNAUTHORIZED (the key holds an account of another directory).
        """
        existing = await self._repo.get_account_by_thumbprint(key.thumbprint)
        if existing is not None and existing.directory != self._settings.directory:
            # One account per key across directories: returning it here would let an
            # account made elsewhere skip this directory's EAB and terms.
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                "this key holds an account of another ACME directory; use a new key here",
            )
        if existing is not None:
            if existing.status is not at.AccountStatus.VALID:
                raise EngineError(
                    ProblemKind.ACCOUNT_NOT_VALID, f"the account is {existing.status}"
                )
            return existing, False
        if only_return_existing:
            raise EngineError(ProblemKind.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
        contacts = check_contact(contact)
        if self._settings.terms_of_service and not tos_agreed:
            raise EngineError(ProblemKind.MALFORMED, "you must agree to the terms of service")
        if eab is None and self._settings.eab_required:
            raise EngineError(
                ProblemKind.EXTERNAL_ACCOUNT_REQUIRED, "this server requires externalAccountBinding"
            )
        if eab is not None:
            check_eab_binding(await self._repo.get_eab_key(eab.kid), eab)
        await self._limit.hit(f"ip:{client}", "new accounts from this address")
        now = self._clock.now()
        account = at.Account(
            id=at.AccountId(at.new_id()),
            status=at.AccountStatus.VALID,
            key=key,
            contact=contacts,
            tos_agreed=tos_agreed,
            created_at=now,
            eab_kid=eab.kid if eab else None,
            directory=self._settings.directory,
        )
        if eab is None:
            stored = await self._repo.add_account(
                account,
                audit=AuditEvent(
                    at=now,
                    actor=f"acme:{account.id}",
                    action="acme.account-create",
                    target=account.id,
                    detail={"directory": account.directory},
                    source=client,
                ),
            )
        else:
            # The key is used up in the same transaction that stores the account, so
            # two racing newAccounts cannot both bind a single-use key.
            stored = await self._repo.add_eab_account(
                account,
                single_use=not self._settings.eab_reuse,
                audit=AuditEvent(
                    at=now,
                    actor=f"acme:{account.id}",
                    action="acme.eab-bind",
                    target=eab.kid,
                    detail={"account": account.id, "directory": account.directory},
                    source=client,
                ),
            )
        if stored.directory != account.directory:
            # Lost a race with the same key on another directory.
            raise EngineError(
                ProblemKind.UNAUTHORIZED,
                "this key holds an account of another ACME directory; use a new key here",
            )
        self._cache(stored)
        return stored, stored.id == account.id

    async def update_account(
        self,
        account: at.Account,
        *,
        contact: Sequence[str] | None,
        deactivate: bool,
        source: str = "",
    ) -> at.Account:
        """Change contacts or deactivate (RFC 8555 §7.3.2, §7.3.6); audited from ``source``.

        Raises:
            EngineError: INVALID_CONTACT, UNSUPPORTED_CONTACT.
        """
        updated = account
        if contact is not None:
            updated = replace(updated, contact=check_contact(contact))
        if deactivate:
            updated = replace(updated, status=at.AccountStatus.DEACTIVATED)
        if updated != account:
            action = "acme.account-deactivate" if deactivate else "acme.account-update"
            await self._repo.update_account(updated, audit=self._event(account, action, {}, source))
            self._cache(updated)
        return updated

    def _event(
        self, account: at.Account, action: str, detail: dict[str, str], source: str
    ) -> AuditEvent:
        return AuditEvent(
            at=self._clock.now(),
            actor=f"acme:{account.id}",
            action=action,
            target=account.id,
            detail=detail,
            source=source,
        )

    async def change_key(
        self, account: at.Account, new_key: at.AccountKey, *, source: str = ""
    ) -> at.Account:
        """Roll the account over to ``new_key`` (RFC 8555 §7.3.5); audited from ``source``.

        Raises:
            EngineError: CONFLICT when another account holds the new key.
        """
        updated = replace(account, key=new_key)
        audit = self._event(
            account,
            "acme.key-change",
            {"old": account.key.thumbprint, "new": new_key.thumbprint},
            source,
        )
        if not await self._repo.update_account(updated, audit=audit):
            raise EngineError(ProblemKind.CONFLICT, "the new key is already in use")
        self._cache(updated)
        return updated

    async def create_eab_key(self, *, actor: Principal) -> at.EabKey:
        """Create an External Account Binding key (HS256, 256 bits; audited, MAC key never)."""
        key = at.EabKey(
            kid=secrets.token_urlsafe(16),
            hmac_key=secrets.token_bytes(32),
            created_at=self._clock.now(),
        )
        audit = AuditEvent(
            at=key.created_at,
            actor=str(actor),
            source=actor.source,
            action="acme.eab-create",
            target=key.kid,
            detail={"reuse": str(self._settings.eab_reuse).lower()},
        )
        await self._repo.add_eab_key(key, audit=audit)
        return key

    async def list_eab_keys(self) -> Sequence[at.EabKey]:
        """Return every EAB key."""
        return await self._repo.list_eab_keys()

    async def revoke_eab_key(
        self, kid: str, *, actor: Principal, deactivate_accounts: bool = False
    ) -> Sequence[at.AccountId]:
        """Revoke an EAB key (audited); optionally deactivate the accounts bound to it.

        Returns:
            The accounts deactivated now (RFC 8555 §7.3.6: they can no longer log in).

        Raises:
            EngineError: NOT_FOUND.
        """
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="acme.eab-revoke",
            target=kid,
            detail={"deactivate_accounts": str(deactivate_accounts).lower()},
        )
        done = await self._repo.revoke_eab_key(
            kid, deactivate_accounts=deactivate_accounts, audit=audit
        )
        if done is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"no EAB key {kid!r}")
        self._cached.clear()
        return done
