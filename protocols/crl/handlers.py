"""CRL endpoint: GET /crl/{ca-id}.crl (DER, RFC 5280 §5)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from protocols.crl import messages
from server.ca.status import api as status_api

__all__ = ["SERVICE", "get_crl"]

SERVICE: Final = web.AppKey("status", status_api.StatusService)


async def get_crl(request: web.Request) -> web.Response:
    """GET the latest complete CRL of a CA (RFC 5280 §5, served as RFC 2585 DER)."""
    crl = await request.app[SERVICE].crl(request.match_info["ca_id"])
    headers = messages.crl_headers(crl)
    if request.headers.get("If-None-Match") == headers["ETag"]:
        headers.pop("Content-Type")
        return web.Response(status=304, headers=headers)
    return web.Response(body=crl.der, headers=headers)
