"""Reading request bodies: a body that does not decode is the client's error, never a 500.

aiohttp decodes ``Content-Encoding`` (gzip, deflate, br) while the handler reads; a body
that is not what the header says raises ``RequestPayloadError`` (or the parser's
``HttpProcessingError``) from ``request.read()``, which an error middleware would
otherwise render as an internal error.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["read"]


async def read(request: web.Request) -> bytes:
    """Return the decoded body.

    Raises:
        web.HTTPBadRequest: the body does not decode as its Content-Encoding says.
    """
    try:
        return await request.read()
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        raise web.HTTPBadRequest(
            reason="the request body does not match its Content-Encoding"
        ) from exc
