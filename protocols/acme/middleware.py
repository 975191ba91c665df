"""ACME sub-app middleware: problem documents, Replay-Nonce and Link headers on every response.

The only place exceptions become responses (RFC 7807 ``application/problem+json``
with RFC 8555 §6.7 types). aiohttp's own 404/405/413 take the same path;
unexpected exceptions become ``serverInternal`` with a request id, logged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from protocols.acme import jws
from protocols.acme.links import Links
from protocols.common import problem
from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind, StorageUnavailableError

__all__ = [
    "CURRENT",
    "DIRECTORIES",
    "MAX_BODY",
    "PREFIX",
    "SERVICE",
    "AcmeProblemError",
    "Directory",
    "acme_middleware",
    "links_for",
    "service_of",
]

log = logging.getLogger(__name__)

# The default directory's service and mount prefix; named directories live in DIRECTORIES.
SERVICE: Final = web.AppKey("acme_service", acme_api.AcmeService)
PREFIX: Final = web.AppKey("acme_prefix", str)
DIRECTORIES: Final = web.AppKey("acme_directories", acme_api.Directories)
MAX_BODY: Final = web.AppKey("acme_max_body", int)
PROBLEM_JSON: Final = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Directory:
    """The directory a request addresses: its service and the prefix its URLs live under."""

    service: acme_api.AcmeService
    prefix: str


CURRENT: Final = web.RequestKey("acme_directory", Directory)


class AcmeProblemError(Exception):
    """A wire-level refusal that no engine call made (415, 405, 409 with Location)."""

    def __init__(self, p: problem.Problem) -> None:
        super().__init__(p.detail)
        self.problem = p


def _current(request: web.Request) -> Directory:
    found = request.get(CURRENT)
    return found or Directory(request.app[SERVICE], request.app[PREFIX])


def service_of(request: web.Request) -> acme_api.AcmeService:
    """Return the ACME service of the directory this request addresses."""
    return _current(request).service


def links_for(request: web.Request) -> Links:
    """Return the URL builder for this request's scheme, Host and directory prefix."""
    return Links.of(request.scheme, request.host, _current(request).prefix)


async def _resolve(request: web.Request) -> None:
    """Bind the request to its directory: ``/acme/<name>/...`` or the default one."""
    name = request.match_info.get("directory")
    if name is None:
        return
    directories = request.app.get(DIRECTORIES)
    if directories is None:
        raise EngineError(ProblemKind.NOT_FOUND, f"no ACME directory {name!r}")
    service = await directories.service(name)
    request[CURRENT] = Directory(service, f"{request.app[PREFIX]}/{name}")


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
    # Allow on 405; Accept-Encoding on 415 for a content coding (RFC 7231 §6.5.13).
    headers = {k: exc.headers[k] for k in ("Allow", "Accept-Encoding") if k in exc.headers}
    return problem.Problem(
        kind=ProblemKind.MALFORMED, detail=detail, status=exc.status, headers=headers
    )


@web.middleware
async def acme_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a problem document and add the ACME headers."""
    try:
        await _resolve(request)
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
    try:
        response.headers["Replay-Nonce"] = await service_of(request).new_nonce()
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
    if request.path != _current(request).prefix + "/directory":
        response.headers.add("Link", f'<{links.directory()}>;rel="index"')
    return response
