"""The ACME engine as the front end holds it: one ``AcmeService`` composing the parts.

Builds each concept once over the same settings, repository, engine and clock:
``accounts`` (accounts, EAB), ``orders`` (orders, authorizations, challenges),
``finalizer`` (finalize, download), ``revocation`` and ``renewal`` (ARI),
``recovery`` (claims a dead process left behind), plus the replay ``nonces``.
Handlers call the part they need (``service.orders.new_order(...)``); the
request-authentication surface the JWS check and middleware use on every request
(``account``, ``new_nonce``, ``use_nonce``) stays here. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.accounts import Accounts
from server.ca.acme.finalize import Finalizer
from server.ca.acme.nonces import NonceService
from server.ca.acme.orders import Orders
from server.ca.acme.ports import AcmeRepository
from server.ca.acme.recovery import Recovery
from server.ca.acme.renewal import Renewal
from server.ca.acme.revocation import Revocation
from server.ca.acme.settings import AcmeSettings
from server.ca.acme.workqueue import ValidationQueue
from server.ca.api import CAEngine
from server.ca.ports import Clock, SystemClock

__all__ = ["AcmeService"]


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
        queue: ValidationQueue | None = None,
    ) -> None:
        self.settings = settings or AcmeSettings()
        clock = clock or SystemClock()
        self.nonces = NonceService(repo, clock, lifetime=self.settings.nonce_lifetime)
        self.accounts = Accounts(repo, clock, self.settings)
        self.renewal = Renewal(engine, clock)
        self.orders = Orders(
            engine,
            repo,
            ports=ports,
            settings=self.settings,
            clock=clock,
            renewal=self.renewal,
            queue=queue,
        )
        self.finalizer = Finalizer(engine, repo, self.orders, clock)
        self.revocation = Revocation(engine, repo, clock)
        self.recovery = Recovery(engine, repo, settings=self.settings, clock=clock)

    async def close(self) -> None:
        """Cancel validation still running (called on shutdown)."""
        await self.orders.close()

    async def account(self, account_id: str) -> at.Account:
        """Return a valid account by id (the JWS ``kid`` check).

        Raises:
            EngineError: ACCOUNT_DOES_NOT_EXIST, UNAUTHORIZED (deactivated or revoked).
        """
        return await self.accounts.account(account_id)

    async def new_nonce(self) -> str:
        """Return a fresh replay nonce."""
        return await self.nonces.issue()

    async def use_nonce(self, nonce: str) -> None:
        """Consume a nonce once (any node). Raises: EngineError BAD_NONCE."""
        await self.nonces.consume(nonce)
