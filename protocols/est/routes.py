"""EST sub-application: routes under /.well-known/est[/{label}] and the error middleware.

The middleware is the only place exceptions become responses: EST errors are
the status plus a short text/plain reason (Retry-After on 202/503), never a
stack trace; unexpected exceptions become a generic 500 with a request id.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from protocols.common import problem
from protocols.est import auth, handlers, links, messages
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api

__all__ = ["build_app"]

log = logging.getLogger(__name__)

# EST has no 409 or 404 for engine kinds other than an unknown label/CA.
_EST_STATUS: dict[ProblemKind, int] = {
    ProblemKind.CONFLICT: 400,
    ProblemKind.RATE_LIMITED: 503,
}
_KEPT_HEADERS: Final = frozenset({"allow", "accept-encoding"})


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=reason.rstrip("\n") + "\n",
        headers=headers or {},
        content_type="text/plain",
    )


def _with_subproblems(err: EngineError) -> str:
    """EST has no subproblems: one line per refused name, each naming its rule."""
    if len(err.subproblems) < 2:
        return err.detail
    return "\n".join([err.detail, *(f"{sp.identifier}: {sp.detail}" for sp in err.subproblems)])


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except messages.EstError as err:
        log.info("EST %s %s -> %s %s", request.method, request.path, err.status, err.reason)
        return _text(err.status, err.reason, err.headers)
    except EngineError as err:
        prob = problem.from_engine_error(err)
        status = _EST_STATUS.get(err.kind, prob.status)
        detail = _with_subproblems(err)
        log.info("EST %s %s -> %s %s", request.method, request.path, status, detail)
        headers = dict(prob.headers)
        if status == 503 and "Retry-After" not in headers:
            headers["Retry-After"] = "30"
        return _text(status, detail, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Allow on 405; Accept-Encoding on 415 for a content coding (RFC 7231 §6.5.13).
        headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
        return _text(exc.status, exc.reason, headers)
    except Exception:  # the one place unexpected errors become a 500
        request_id = secrets.token_hex(6)
        log.exception("EST %s %s failed (request %s)", request.method, request.path, request_id)
        return _text(500, problem.internal_error(request_id).detail)


@web.middleware
async def _rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[handlers.AUTH]
    if settings.requests.enabled:
        client = settings.client_key(request)
        if wait := settings.requests.take(client):
            raise EngineError(
                ProblemKind.RATE_LIMITED,
                f"too many EST requests from {client}; at most {settings.requests.rate:g} a second",
                retry_after=wait,
            )
    return await handler(request)


def build_app(
    service: est_api.EstService,
    *,
    client_cert_header: str | None = None,
    trusted_proxies: Sequence[str] = (),
    max_body_bytes: int = 64 * 1024,
    requests_per_second: float = 0,
    request_burst: int = 1,
) -> web.Application:
    """Return the EST sub-application (mount it at ``links.PREFIX``).

    Per client address: at most ``requests_per_second`` requests (bursts of
    ``request_burst``), else 503 with Retry-After; 0 turns the limit off. Failed
    logins are limited by the service (``est_api.LoginLimits``), answered the same way.
    """
    app = web.Application(middlewares=[_errors, _rate_limit], client_max_size=max_body_bytes)
    app[handlers.SERVICE] = service
    app[handlers.AUTH] = auth.AuthSettings.create(
        client_cert_header,
        trusted_proxies,
        requests_per_second=requests_per_second,
        request_burst=request_burst,
    )
    gets = {"cacerts": handlers.cacerts, "csrattrs": handlers.csrattrs}
    posts = {
        "simpleenroll": handlers.simpleenroll,
        "simplereenroll": handlers.simplereenroll,
        "serverkeygen": handlers.serverkeygen,
        "fullcmc": handlers.fullcmc,
    }
    assert set(gets) | set(posts) == set(links.OPERATIONS)  # noqa: S101 - wiring invariant
    for prefix in ("", "/{label}"):
        for op, get_handler in gets.items():
            app.router.add_get(f"{prefix}/{op}", get_handler, allow_head=False)
        for op, post_handler in posts.items():
            app.router.add_post(f"{prefix}/{op}", post_handler)
    return app
