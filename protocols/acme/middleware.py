"""ACME sub-app middleware: problem documents, Replay-Nonce and Link headers on every response.

The only place exceptions become responses (RFC 7807 ``application/problem+json``
with RFC 8555 §6.7 types). aiohttp's own 404/405/413 take the same path;
unexpected exceptions become ``serverInternal`` with a request id, logged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from protocols.acme import jws
from protocols.acme.links import Links
from protocols.common import problem
from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind, StorageUnavailableError

__all__ = ["MAX_BODY", "PREFIX", "SERVICE", "AcmeProblemError", "acme_middleware", "links_for"]

log = logging.getLogger(__name__)

SERVICE: Final = web.AppKey("acme_service", acme_api.AcmeService)
PREFIX: Final = web.AppKey("acme_prefix", str)
MAX_BODY: Final = web.AppKey("acme_max_body", int)
PROBLEM_JSON: Final = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AcmeProblemError(Exception):
    """A wire-level refusal that no engine call made (415, 405, 409 with Location)."""

    def __init__(self, p: problem.Problem) -> None:
        super().__init__(p.detail)
        self.problem = p


def links_for(request: web.Request) -> Links:
    """Return the URL builder for this request's scheme, Host and mount prefix."""
    return Links.of(request.scheme, request.host, request.app[PREFIX])


def render(p: problem.Problem) -> web.Response:
    """Render a problem document."""
    body = p.to_json()
    if p.kind is ProblemKind.BAD_SIGNATURE_ALGORITHM:
        body["algorithms"] = list(jws.ALGORITHMS)  # RFC 8555 §6.2
    return web.json_response(body, status=p.status, content_type=PROBLEM_JSON, headers=p.headers)


def _from_http(exc: web.HTTPException) -> problem.Problem:
    detail = {
        404: "no such resource",
        405: "method not allowed",
        413: "the request body is too large",
    }.get(exc.status, exc.reason)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    return problem.Problem(
        kind=ProblemKind.MALFORMED, detail=detail, status=exc.status, headers=headers
    )


@web.middleware
async def acme_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a problem document and add the ACME headers."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render(_from_http(exc))
    except EngineError as exc:
        response = render(problem.from_engine_error(exc))
    except AcmeProblemError as exc:
        response = render(exc.problem)
    except Exception:
        request_id = secrets.token_hex(6)
        log.exception(
            "ACME request %s %s failed (request %s)", request.method, request.path, request_id
        )
        response = render(problem.internal_error(request_id))
    if response.status >= 400:
        # One line per refused request; the detail is user-safe (EngineError's contract).
        body = response.body if isinstance(response, web.Response) else b""
        log.info(
            "ACME %s %s -> %d %s",
            request.method,
            request.path,
            response.status,
            body.decode(errors="replace") if isinstance(body, bytes) else "",
        )
    service = request.app[SERVICE]
    try:
        response.headers["Replay-Nonce"] = await service.new_nonce()
    except StorageUnavailableError as exc:
        # RFC 8555 §6.5: every answer carries a nonce; without storage there is none to
        # give, so a success becomes the outage (a refusal was logged above already).
        if response.status < 400:
            response = render(problem.from_engine_error(exc))
            log.info("ACME %s %s -> 503 %s", request.method, request.path, exc.detail)
    except Exception:
        log.exception("could not issue a replay nonce")
    response.headers.setdefault("Cache-Control", "no-store")
    links = links_for(request)
    if request.path != request.app[PREFIX] + "/directory":
        response.headers.add("Link", f'<{links.directory()}>;rel="index"')
    return response
