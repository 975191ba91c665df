"""Admin API sub-application (mount at /admin/v1): routes and the one error middleware.

The middleware is the only place exceptions become responses: RFC 9457 problem
documents (``application/problem+json``) for engine errors, aiohttp's own
404/405/413/415, and a generic 500 with a request id for anything unexpected.
A 401 carries ``WWW-Authenticate: Bearer`` (RFC 6750 §3).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from protocols.admin import handlers, links
from protocols.common import problem
from server.ca.admin import api as admin_api
from server.ca.errors import EngineError, ProblemKind

__all__ = ["PROBLEM_JSON", "ROUTES", "build_app", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
_REALM: Final = 'Bearer realm="privca admin"'

_View = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]
# (method, path under the prefix, handler): the OpenAPI document must describe exactly these.
ROUTES: Final[tuple[tuple[str, str, _View], ...]] = (
    ("GET", links.OPENAPI, handlers.openapi_document),
    ("GET", "/whoami", handlers.whoami),
    ("GET", "/cas", handlers.list_cas),
    ("POST", "/cas", handlers.create_root),
    ("POST", "/cas/imports", handlers.create_import),
    ("GET", "/cas/{ca}", handlers.get_ca),
    ("GET", "/cas/{ca}/certificate", handlers.ca_certificate),
    ("POST", "/cas/{ca}/subordinates", handlers.create_subordinate),
    ("POST", "/cas/{ca}/activate", handlers.activate_import),
    ("POST", "/cas/{ca}/disable", handlers.disable_ca),
    ("POST", "/cas/{ca}/enable", handlers.enable_ca),
    ("POST", "/cas/{ca}/revoke", handlers.revoke_ca),
    ("POST", "/cas/{ca}/renew", handlers.renew_ca),
    ("POST", "/cas/{ca}/crl", handlers.regenerate_crl),
    ("POST", "/cas/{ca}/certificates", handlers.issue),
    ("GET", "/certificates", handlers.list_certificates),
    ("GET", "/certificates/{serial}", handlers.get_certificate),
    ("POST", "/certificates/{serial}/revoke", handlers.revoke_certificate),
    ("GET", "/est/labels", handlers.list_labels),
    ("POST", "/est/labels", handlers.create_label),
    ("GET", "/est/labels/{label}", handlers.get_label),
    ("DELETE", "/est/labels/{label}", handlers.delete_label),
    ("GET", "/est/labels/{label}/users", handlers.list_users),
    ("POST", "/est/labels/{label}/users", handlers.put_user),
    ("DELETE", "/est/labels/{label}/users/{username}", handlers.delete_user),
    ("GET", "/est/pending", handlers.list_pending),
    ("POST", "/est/pending/{id}/approve", handlers.approve_pending),
    ("POST", "/est/pending/{id}/reject", handlers.reject_pending),
    ("GET", "/acme/directories", handlers.list_directories),
    ("POST", "/acme/directories", handlers.create_directory),
    ("GET", "/acme/directories/{name}", handlers.get_directory),
    ("DELETE", "/acme/directories/{name}", handlers.delete_directory),
    ("GET", "/acme/eab-keys", handlers.list_eab_keys),
    ("POST", "/acme/eab-keys", handlers.create_eab_key),
    ("POST", "/acme/eab-keys/{kid}/revoke", handlers.revoke_eab_key),
    ("POST", "/matter/paa", handlers.create_paa),
    ("POST", "/matter/rcac", handlers.create_rcac),
    ("POST", "/cas/{ca}/matter/pai", handlers.create_pai),
    ("POST", "/cas/{ca}/matter/icac", handlers.create_icac),
    ("POST", "/cas/{ca}/matter/dac", handlers.issue_dac),
    ("POST", "/cas/{ca}/matter/dacs", handlers.issue_dacs),
    ("POST", "/cas/{ca}/matter/noc", handlers.issue_noc),
    ("GET", "/audit", handlers.list_audit),
    ("GET", "/audit/export", handlers.export_audit),
)


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str,
    instance: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    """Return an RFC 9457 problem document."""
    body: dict[str, object] = {
        "type": links.PROBLEM_TYPE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **(extra or {}),
    }
    return web.json_response(body, status=status, headers=headers, content_type=PROBLEM_JSON)


def _engine_problem(request: web.Request, err: EngineError) -> web.Response:
    prob = problem.from_engine_error(err)
    headers = dict(prob.headers)
    if err.kind is ProblemKind.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = _REALM
    extra: dict[str, object] = {}
    if err.subproblems:
        extra["subproblems"] = [
            {"kind": str(s.kind), "detail": s.detail, "identifier": s.identifier}
            for s in err.subproblems
        ]
    return problem_response(
        prob.status,
        prob.detail,
        kind=str(err.kind),
        instance=request.path,
        headers=headers,
        extra=extra,
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EngineError as err:
        log.info("admin %s %s -> %s %s", request.method, request.path, err.kind, err.detail)
        return _engine_problem(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        log.info("admin %s %s -> %s %s", request.method, request.path, exc.status, exc.reason)
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "accept-encoding")
        }
        kind = {404: "notFound", 405: "methodNotAllowed", 413: "tooLarge"}.get(
            exc.status, "malformed"
        )
        return problem_response(
            exc.status, exc.reason, kind=kind, instance=request.path, headers=headers
        )
    except Exception:  # the one place unexpected errors become a 500
        request_id = secrets.token_hex(6)
        log.exception("admin %s %s failed (request %s)", request.method, request.path, request_id)
        return problem_response(
            500,
            problem.internal_error(request_id).detail,
            kind=str(ProblemKind.SERVER_INTERNAL),
            instance=request.path,
        )


def build_app(
    service: admin_api.AdminService, *, max_body_bytes: int = 64 * 1024
) -> web.Application:
    """Return the admin sub-application (mount it at ``links.PREFIX``)."""
    app = web.Application(middlewares=[_errors], client_max_size=max_body_bytes)
    app[handlers.SERVICE] = service
    app[handlers.MAX_BODY] = max_body_bytes
    for method, path, view in ROUTES:
        app.router.add_route(method, path, view)
    return app
