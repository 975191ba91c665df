"""Admin API authentication at the edge: a Bearer token, else a TLS client certificate.

Finds the credentials a request carries and asks the admin facade to verify
them; every failure is audited there and answered 401. The client certificate
comes from this connection's TLS handshake only: no forwarded-certificate header
is honoured here (a proxy in front of the admin API would make every admin
identity the proxy's).
"""

from __future__ import annotations

from aiohttp import web

from server.ca.admin import api as admin_api

__all__ = ["authenticate", "peer_certificate"]


def peer_certificate(request: web.Request) -> bytes | None:
    """Return the DER client certificate of the TLS connection, None without one."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


async def authenticate(
    request: web.Request, service: admin_api.AdminService
) -> admin_api.AdminPrincipal:
    """Return who sends ``request`` (RFC 6750 Bearer token, or an admin client certificate).

    Raises:
        EngineError: UNAUTHENTICATED (401) for missing, malformed, unknown, expired or
            revoked credentials; each is audited with the client address.
    """
    address = request.remote
    action = f"{request.method} {request.path}"
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise await service.unauthenticated(
                address=address, action=action, reason="only Bearer tokens are accepted"
            )
        return await service.authenticate_token(value.strip(), address=address, action=action)
    der = peer_certificate(request)
    if der is not None:
        return await service.authenticate_certificate(der, address=address, action=action)
    raise await service.unauthenticated(
        address=address,
        action=action,
        reason="authentication required (a Bearer token or an admin client certificate)",
    )
