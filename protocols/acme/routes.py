"""ACME sub-app: routes, middleware and lifecycle (mounted at /acme by server/app.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

from aiohttp import web

from protocols.acme import handlers, links
from protocols.acme.middleware import DIRECTORIES, MAX_BODY, PREFIX, SERVICE, acme_middleware
from server.ca.acme import api as acme_api

__all__ = ["build_app"]


# A named directory's segment (server.ca.acme.directories checks the name itself).
_DIRECTORY: Final = "/{directory:[a-z0-9][a-z0-9._-]{0,63}}"


def build_app(
    service: acme_api.AcmeService,
    *,
    directories: acme_api.Directories | None = None,
    prefix: str = "/acme",
    client_max_size: int = 64 * 1024,
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> web.Application:
    """Return the ACME application to mount at ``prefix``.

    ``service`` is the default directory (``prefix/directory``); each of
    ``directories`` is served under ``prefix/<name>/`` with the same routes.

    ``closers`` run on cleanup after background validation has been cancelled
    (e.g. closing the http-01 fetcher's connection pool).
    """
    app = web.Application(middlewares=[acme_middleware], client_max_size=client_max_size)
    app[SERVICE] = service
    app[PREFIX] = prefix
    app[MAX_BODY] = client_max_size
    if directories is not None:
        app[DIRECTORIES] = directories

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        await service.close()
        if directories is not None:
            await directories.close()
        for close in closers:
            await close()

    app.cleanup_ctx.append(lifecycle)
    # The default directory's routes first: a named directory's first segment never
    # shadows them (the names of these segments are reserved).
    for base in ("", _DIRECTORY):
        _add_routes(app.router, base)
    return app


def _add_routes(r: web.UrlDispatcher, base: str) -> None:
    """Add every ACME resource of one directory under ``base``."""
    r.add_get(base + links.DIRECTORY, handlers.directory)
    r.add_route("HEAD", base + links.NEW_NONCE, handlers.new_nonce)
    r.add_get(base + links.NEW_NONCE, handlers.new_nonce, allow_head=False)
    r.add_post(base + links.NEW_ACCOUNT, handlers.new_account)
    r.add_post(base + links.ACCOUNT + "/{account_id}", handlers.account)
    r.add_post(base + links.ACCOUNT + "/{account_id}/orders", handlers.orders)
    r.add_post(base + links.KEY_CHANGE, handlers.key_change)
    r.add_post(base + links.NEW_ORDER, handlers.new_order)
    r.add_post(base + links.NEW_AUTHZ, handlers.new_authz)
    r.add_post(base + links.ORDER + "/{order_id}", handlers.order)
    r.add_post(base + links.ORDER + "/{order_id}/finalize", handlers.finalize)
    r.add_post(base + links.AUTHZ + "/{authz_id}", handlers.authz)
    r.add_post(base + links.CHALLENGE + "/{authz_id}/{type}", handlers.challenge)
    r.add_post(base + links.CERT + "/{cert_ref}", handlers.certificate)
    r.add_post(base + links.CERT + "/{cert_ref}/{alt}", handlers.certificate)
    r.add_post(base + links.REVOKE_CERT, handlers.revoke_cert)
    r.add_get(base + links.RENEWAL_INFO + "/{cert_id}", handlers.renewal_info)
