"""OCSP endpoints: one ``async def`` per method (RFC 6960 Appendix A, RFC 5019 §5)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from protocols.common import body as body_reader
from protocols.ocsp import links, messages
from server.ca.errors import EngineError, ProblemKind
from server.ca.status import api as status_api

__all__ = ["MAX_REQUEST", "SERVICE", "get_request", "post_request"]

SERVICE: Final = web.AppKey("status", status_api.StatusService)
MAX_REQUEST: Final = web.AppKey("max_request_bytes", int)
_GET_PREFIX: Final = links.PREFIX + "/"


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise EngineError(ProblemKind.MALFORMED, "the request is too large")
    # read() is bounded by the app's client_max_size (413 otherwise).
    body = await body_reader.read(request)
    if len(body) > limit:
        raise EngineError(ProblemKind.MALFORMED, "the request is too large")
    return body


async def post_request(request: web.Request) -> web.Response:
    """POST an OCSPRequest (RFC 6960 Appendix A.1)."""
    if request.content_type != messages.REQUEST_TYPE:
        raise EngineError(ProblemKind.MALFORMED, f"Content-Type must be {messages.REQUEST_TYPE}")
    service = request.app[SERVICE]
    body = await _read_body(request, request.app[MAX_REQUEST])
    answer = service.cached_ocsp(body) or await service.ocsp(body)
    return web.Response(body=answer.der, headers=messages.response_headers(answer))


async def get_request(request: web.Request) -> web.Response:
    """GET /ocsp/{url-encoded base64 OCSPRequest} (RFC 5019 §5)."""
    service = request.app[SERVICE]
    raw = request.raw_path.split("?", 1)[0]
    der = messages.decode_get(raw[len(_GET_PREFIX) :], max_bytes=request.app[MAX_REQUEST])
    answer = service.cached_ocsp(der) or await service.ocsp(der)
    headers = messages.response_headers(answer)
    if answer.cacheable and request.headers.get("If-None-Match") == answer.etag:
        headers.pop("Content-Type")
        return web.Response(status=304, headers=headers)
    return web.Response(body=answer.der, headers=headers)
