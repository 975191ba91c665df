"""OCSP sub-application: routes under /ocsp and the error middleware.

The middleware is the only place exceptions become responses. OCSP errors
are unsuccessful OCSPResponses (RFC 6960 §4.2.1): malformedRequest,
unauthorized, tryLater or internalError, sent with HTTP 200 (RFC 5019 §5);
aiohttp's own 404/405 keep their status with a malformedRequest body.
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from protocols.common import body
from protocols.ocsp import handlers, messages
from server.ca.errors import EngineError
from server.ca.status import api as status_api

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def _unsuccessful(status: int, http_status: int = 200) -> web.Response:
    return web.Response(
        status=http_status,
        body=messages.unsuccessful_body(status),
        headers=messages.error_headers(),
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as err:
        status = messages.unsuccessful_status(err.kind)
        log.info("OCSP %s %s -> status %d: %s", request.method, request.path, status, err.detail)
        return _unsuccessful(status)
    except body.UnsupportedCodingError as exc:
        # A compressed request is a malformed one: HTTP 200 with malformedRequest, which
        # `openssl ocsp` reports as "Responder Error: malformedrequest" (on a 415 it
        # reports only the HTTP status). No OCSP client compresses its requests.
        log.info("OCSP %s %s -> status 1: %s", request.method, request.path, exc.reason)
        resp = _unsuccessful(messages.MALFORMED_REQUEST)
        resp.headers["Accept-Encoding"] = body.ACCEPTED_CODINGS
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        log.info("OCSP %s %s -> HTTP %d", request.method, request.path, exc.status)
        resp = _unsuccessful(messages.MALFORMED_REQUEST, exc.status)
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        request_id = secrets.token_hex(6)
        log.exception("OCSP %s %s failed (request %s)", request.method, request.path, request_id)
        return _unsuccessful(messages.INTERNAL_ERROR)


def build_app(
    service: status_api.StatusService, *, max_request_bytes: int = 8192
) -> web.Application:
    """Return the OCSP sub-application (mount it at ``links.PREFIX``)."""
    app = web.Application(middlewares=[_errors], client_max_size=max_request_bytes)
    app[handlers.SERVICE] = service
    app[handlers.MAX_REQUEST] = max_request_bytes
    app.router.add_post("", handlers.post_request)
    app.router.add_post("/", handlers.post_request)
    app.router.add_get("/{request:.+}", handlers.get_request)
    return app
