"""Ports of the ACME engine: its repository and the network it validates over.

``server/store/acme_repository.py`` implements ``AcmeRepository``;
``protocols/acme/network.py`` implements the network ports. Imports only engine
types; must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.ca import types
from server.ca.acme import types as at

__all__ = [
    "AcmeRepository",
    "FetchResult",
    "HttpFetcher",
    "NetworkError",
    "TlsAlpnProber",
    "TxtResolver",
]


class NetworkError(Exception):
    """A validation-time network failure; ``kind`` is connection, dns or tls."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What an http-01 fetch returned (body capped by the fetcher)."""

    status: int
    body: bytes


class HttpFetcher(Protocol):
    """Fetch ``http://host:port/path`` with the given Host header (no redirects to others)."""

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> FetchResult:
        """Return the response; NetworkError on connection failures."""
        ...


class TxtResolver(Protocol):
    """Look up TXT records."""

    async def txt(self, name: str) -> Sequence[str]:
        """Return the TXT strings of ``name``; NetworkError(dns) when the lookup fails."""
        ...


class TlsAlpnProber(Protocol):
    """Open TLS with ALPN acme-tls/1 and return the peer certificate (RFC 8737 §3)."""

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        """Return the DER of the certificate served; NetworkError(tls|connection) otherwise."""
        ...


class AcmeRepository(Protocol):
    """Persistent ACME state; every write is one short transaction."""

    # accounts
    async def add_account(
        self, account: at.Account, *, audit: types.AuditEvent | None = None
    ) -> at.Account:
        """Insert an account (and its audit event, atomically); on a thumbprint race
        return the existing one (nothing audited)."""
        ...

    async def add_eab_account(
        self, account: at.Account, *, single_use: bool, audit: types.AuditEvent
    ) -> at.Account:
        """Bind ``account.eab_kid`` and insert the account and the audit event atomically.

        On a thumbprint race return the existing account (the key is not used up).

        Raises:
            EngineError: UNAUTHORIZED when the key is unknown, revoked or, with
                ``single_use``, already bound to an account.
        """
        ...

    async def get_account(self, account_id: at.AccountId) -> at.Account | None:
        """Return an account by id."""
        ...

    async def get_account_by_thumbprint(self, thumbprint: str) -> at.Account | None:
        """Return the account holding a key."""
        ...

    async def update_account(
        self, account: at.Account, *, audit: types.AuditEvent | None = None
    ) -> bool:
        """Replace contact/status/key (audited atomically); False when the new key is in use."""
        ...

    # orders and authorizations
    async def add_order(
        self,
        order: at.Order,
        new_authzs: Sequence[at.Authorization],
        *,
        superseding: Sequence[at.OrderId] = (),
        audit: types.AuditEvent | None = None,
    ) -> None:
        """Insert an order, its new authorizations and its audit event in one transaction.

        An order with ``replaces`` also claims the certificate's one replacement
        slot (RFC 9773 §5): free, or held by one of ``superseding`` (orders the
        engine found dead). Two racing orders cannot both claim it.

        Raises:
            EngineError: ALREADY_REPLACED when another order holds the slot.
        """
        ...

    async def get_order(self, order_id: at.OrderId) -> at.Order | None:
        """Return an order with its authorizations filled in."""
        ...

    async def orders_replacing(self, cert_id: str) -> Sequence[at.Order]:
        """Return the orders whose ``replaces`` names ``cert_id`` (RFC 9773 §5)."""
        ...

    async def list_order_ids(self, account_id: at.AccountId, *, limit: int) -> Sequence[at.OrderId]:
        """Return the newest order ids of an account."""
        ...

    async def claim_order(
        self, order_id: at.OrderId, *, frm: at.OrderStatus, since: datetime, csr_key_sha256: str
    ) -> bool:
        """Move an order from ``frm`` to PROCESSING, claimed ``since`` then for a CSR's key.

        One statement. False when the order was not in ``frm``.
        """
        ...

    async def finish_order(
        self,
        order_id: at.OrderId,
        *,
        status: at.OrderStatus,
        cert_ref: str | None,
        error: at.StoredProblem | None,
        audit: types.AuditEvent | None = None,
        claimed_before: datetime | None = None,
    ) -> bool:
        """End a finalization claim (valid with a certificate, invalid, or back to pending).

        Only an order still PROCESSING (and, with ``claimed_before``, claimed before
        that time) changes; False when it was not, and then nothing is recorded.
        ``audit`` commits with the change; without one the update is a single
        statement (the valid order of every finalize).
        """
        ...

    async def find_valid_authz(
        self, account_id: at.AccountId, identifier: at.Identifier, *, now: datetime, wildcard: bool
    ) -> at.Authorization | None:
        """Return a reusable valid, unexpired authorization of an account for an identifier."""
        ...

    async def count_pending_authzs(self, account_id: at.AccountId, *, now: datetime) -> int:
        """Return how many unexpired pending authorizations an account holds."""
        ...

    async def add_authz(
        self, authz: at.Authorization, *, audit: types.AuditEvent | None = None
    ) -> None:
        """Insert a stand-alone authorization (newAuthz) and its audit event atomically."""
        ...

    async def get_authz(self, authz_id: at.AuthzId) -> at.Authorization | None:
        """Return an authorization."""
        ...

    async def claim_challenge(
        self, authz_id: at.AuthzId, updated: at.Authorization, *, since: datetime
    ) -> bool:
        """Store ``updated``, claimed for validation ``since`` then, if the authorization is
        pending and not being validated (one statement)."""
        ...

    async def save_authz(
        self,
        authz: at.Authorization,
        *,
        validating_done: bool,
        audit: types.AuditEvent | None = None,
        claimed: bool = False,
    ) -> bool:
        """Replace an authorization's status and challenges (audited atomically).

        With ``claimed`` only while it is still claimed for validation: False when
        the claim was already ended (deactivated, or recovered as interrupted), and
        then nothing changes or is recorded.
        """
        ...

    async def stuck_authzs(
        self, *, claimed_before: datetime, limit: int
    ) -> Sequence[at.Authorization]:
        """Return up to ``limit`` authorizations claimed for validation before a time."""
        ...

    async def stuck_orders(
        self, *, claimed_before: datetime, limit: int
    ) -> Sequence[at.ClaimedOrder]:
        """Return up to ``limit`` orders claimed for finalization before a time."""
        ...

    # replay nonces
    async def consume_nonces(self, nonces: Sequence[tuple[str, datetime]]) -> set[str]:
        """Record distinct nonces (with their expiry) as used in one statement.

        Returns the nonces that were not used before (single use across all nodes).
        """
        ...

    async def purge_nonces(self, *, before: datetime) -> int:
        """Forget used nonces that expired before ``before``."""
        ...

    async def nonce_secret(self, candidate: bytes) -> bytes:
        """Return the installation-wide nonce key, storing ``candidate`` on first use."""
        ...

    # rate limits
    async def hit_rate_limit(self, key: str, *, window_start: datetime, limit: int) -> bool:
        """Count one event in ``key``'s fixed window; False (not counted) once at ``limit``.

        Shared by every node: the counter lives in the database.
        """
        ...

    # external account binding
    async def add_eab_key(self, key: at.EabKey, *, audit: types.AuditEvent) -> None:
        """Insert an EAB key and its audit event."""
        ...

    async def get_eab_key(self, kid: str) -> at.EabKey | None:
        """Return an EAB key by id."""
        ...

    async def list_eab_keys(self) -> Sequence[at.EabKey]:
        """Return every EAB key with its bound accounts, oldest first."""
        ...

    async def revoke_eab_key(
        self, kid: str, *, deactivate_accounts: bool, audit: types.AuditEvent
    ) -> Sequence[at.AccountId] | None:
        """Mark an EAB key revoked (audited), optionally deactivating its valid accounts.

        Returns the accounts deactivated now, or None when the key is unknown.
        """
        ...

    # named directories (managed by the CLI; config-file ones never reach storage)
    async def add_directory(self, directory: at.AcmeDirectory, *, audit: types.AuditEvent) -> None:
        """Insert a directory and its audit event; ``EngineError(CONFLICT)`` if it exists."""
        ...

    async def get_directory(self, name: str) -> at.AcmeDirectory | None:
        """Return a stored directory by name."""
        ...

    async def list_directories(self) -> Sequence[at.AcmeDirectory]:
        """Return every stored directory, by name."""
        ...

    async def remove_directory(self, name: str, *, audit: types.AuditEvent) -> bool:
        """Delete a directory and record the audit event; False if it did not exist."""
        ...
