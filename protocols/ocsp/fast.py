"""Lean path for cached OCSP answers, in front of the application router.

# Divergence: STYLE routes every request through the sub-app and its error
# middleware. A cached OCSP answer is ~40% cheaper when answered straight from
# the HTTP server's handler (no router resolve, no middleware chain), and at
# tens of thousands of answers per second that difference is the throughput.
# Only cache hits are answered here: a miss, an error or any other path goes
# to the full application unchanged (the body already read stays readable
# through ``request.read()``), so every error still comes from the middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from protocols.ocsp import links, messages
from server.ca import status_api
from server.ca.errors import EngineError

__all__ = ["install"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_GET_PREFIX: Final = links.PREFIX + "/"


def wrap(service: status_api.StatusService, inner: Handler, *, max_request_bytes: int) -> Handler:
    """Return a server handler answering cached OCSP hits and delegating the rest."""
    cached = service.cached_ocsp
    headers_of = messages.response_headers
    request_type = messages.REQUEST_TYPE
    prefix_len = len(_GET_PREFIX)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        path = request.raw_path
        if method == "POST":
            length = request.content_length
            if (
                path == links.PREFIX
                and length is not None
                and 0 < length <= max_request_bytes
                and request.headers.get("Content-Type") == request_type
            ):
                answer = cached(await request.read())
                if answer is not None:
                    return web.Response(body=answer.der, headers=headers_of(answer))
        elif method == "GET" and path.startswith(_GET_PREFIX) and "?" not in path:
            try:
                der = messages.decode_get(path[prefix_len:], max_bytes=max_request_bytes)
            except EngineError:
                der = b""
            answer = cached(der) if der else None
            if answer is not None and (
                not answer.cacheable or request.headers.get("If-None-Match") != answer.etag
            ):
                return web.Response(body=answer.der, headers=headers_of(answer))
        return await inner(request)

    return handle


def install(
    runner: web.AppRunner, service: status_api.StatusService, *, max_request_bytes: int
) -> None:
    """Put the lean path in front of a set-up runner's application handler."""
    server = runner.server
    if server is None:
        raise RuntimeError("set the runner up before installing the OCSP fast path")
    server.request_handler = wrap(
        service, server.request_handler, max_request_bytes=max_request_bytes
    )
