"""CRL sub-application: GET /crl/{ca-id}.crl and its error middleware.

Errors are the HTTP status plus a short text/plain reason (404 for an
unknown CA, 503 + Retry-After while another node generates the first CRL).
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from protocols.common import problem
from protocols.crl import handlers, messages
from server.ca.errors import EngineError
from server.ca.status import api as status_api

__all__ = ["build_app", "errors_middleware"]

log = logging.getLogger(__name__)


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=messages.text_error(reason),
        headers=headers or {},
        content_type="text/plain",
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render engine and HTTP errors as status + text/plain reason."""
    try:
        return await handler(request)
    except EngineError as err:
        prob = problem.from_engine_error(err)
        headers = dict(prob.headers)
        log.info("%s %s -> %s %s", request.method, request.path, prob.status, prob.detail)
        return _text(prob.status, prob.detail, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _text(exc.status, exc.reason, headers)
    except Exception:
        request_id = secrets.token_hex(6)
        log.exception("%s %s failed (request %s)", request.method, request.path, request_id)
        return _text(500, problem.internal_error(request_id).detail)


def build_app(service: status_api.StatusService) -> web.Application:
    """Return the CRL sub-application (mount it at ``links.PREFIX``)."""
    app = web.Application(middlewares=[errors_middleware])
    app[handlers.SERVICE] = service
    app.router.add_get("/{ca_id:[0-9A-Za-z_-]{1,32}}.crl", handlers.get_crl)
    return app
