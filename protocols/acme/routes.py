"""ACME sub-app: routes, middleware and lifecycle (mounted at /acme by server/app.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from protocols.acme import handlers, links
from protocols.acme.middleware import MAX_BODY, PREFIX, SERVICE, acme_middleware
from server.ca.acme import api as acme_api

__all__ = ["build_app"]


def build_app(
    service: acme_api.AcmeService,
    *,
    prefix: str = "/acme",
    client_max_size: int = 64 * 1024,
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> web.Application:
    """Return the ACME application to mount at ``prefix``.

    ``closers`` run on cleanup after background validation has been cancelled
    (e.g. closing the http-01 fetcher's connection pool).
    """
    app = web.Application(middlewares=[acme_middleware], client_max_size=client_max_size)
    app[SERVICE] = service
    app[PREFIX] = prefix
    app[MAX_BODY] = client_max_size

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        await service.close()
        for close in closers:
            await close()

    app.cleanup_ctx.append(lifecycle)
    r = app.router
    r.add_get(links.DIRECTORY, handlers.directory)
    r.add_route("HEAD", links.NEW_NONCE, handlers.new_nonce)
    r.add_get(links.NEW_NONCE, handlers.new_nonce, allow_head=False)
    r.add_post(links.NEW_ACCOUNT, handlers.new_account)
    r.add_post(links.ACCOUNT + "/{account_id}", handlers.account)
    r.add_post(links.ACCOUNT + "/{account_id}/orders", handlers.orders)
    r.add_post(links.KEY_CHANGE, handlers.key_change)
    r.add_post(links.NEW_ORDER, handlers.new_order)
    r.add_post(links.NEW_AUTHZ, handlers.new_authz)
    r.add_post(links.ORDER + "/{order_id}", handlers.order)
    r.add_post(links.ORDER + "/{order_id}/finalize", handlers.finalize)
    r.add_post(links.AUTHZ + "/{authz_id}", handlers.authz)
    r.add_post(links.CHALLENGE + "/{authz_id}/{type}", handlers.challenge)
    r.add_post(links.CERT + "/{cert_ref}", handlers.certificate)
    r.add_post(links.CERT + "/{cert_ref}/{alt}", handlers.certificate)
    r.add_post(links.REVOKE_CERT, handlers.revoke_cert)
    r.add_get(links.RENEWAL_INFO + "/{cert_id}", handlers.renewal_info)
    return app
