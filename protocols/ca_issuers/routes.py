"""caIssuers sub-application: GET /ca/{ca-id}.cer (errors as status + text/plain)."""

from __future__ import annotations

from aiohttp import web

from protocols.ca_issuers import handlers
from protocols.crl.routes import errors_middleware
from server.ca.status import api as status_api

__all__ = ["build_app"]


def build_app(service: status_api.StatusService) -> web.Application:
    """Return the caIssuers sub-application (mount it at ``links.PREFIX``)."""
    app = web.Application(middlewares=[errors_middleware])
    app[handlers.SERVICE] = service
    app.router.add_get("/{ca_id:[0-9A-Za-z_-]{1,32}}.cer", handlers.get_ca_certificate)
    return app
