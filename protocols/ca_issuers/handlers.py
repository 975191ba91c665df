"""caIssuers endpoint: GET /ca/{ca-id}.cer."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from protocols.ca_issuers import messages
from server.ca.status import api as status_api

__all__ = ["SERVICE", "get_ca_certificate"]

SERVICE: Final = web.AppKey("status", status_api.StatusService)


async def get_ca_certificate(request: web.Request) -> web.Response:
    """GET a CA certificate in DER (RFC 5280 §4.2.2.1, RFC 2585)."""
    der = await request.app[SERVICE].ca_certificate(request.match_info["ca_id"])
    return web.Response(
        body=der,
        headers={
            "Content-Type": messages.CERT_TYPE,
            "Cache-Control": f"max-age={messages.MAX_AGE}, public",
        },
    )
