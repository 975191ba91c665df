"""One handler per EST operation (RFC 7030 §4); each parses, authenticates, calls the facade once.

Handlers never catch ``EngineError``: the sub-app's error middleware renders it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from aiohttp import web

from protocols.common import body as body_reader
from protocols.est import auth, messages
from server.ca.est import api as est_api

__all__ = [
    "AUTH",
    "SERVICE",
    "cacerts",
    "csrattrs",
    "fullcmc",
    "serverkeygen",
    "simpleenroll",
    "simplereenroll",
]

SERVICE: Final = web.AppKey("est_service", est_api.EstService)
AUTH: Final = web.AppKey("est_auth", auth.AuthSettings)

_B64: Final = {"Content-Transfer-Encoding": "base64"}


async def _label(request: web.Request) -> est_api.EstLabel:
    return await request.app[SERVICE].get_label(request.match_info.get("label"))


def _base64_response(der: bytes, content_type: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=messages.encode_base64(der),
        headers={"Content-Type": content_type, **_B64},
    )


async def cacerts(request: web.Request) -> web.Response:
    """GET /cacerts: the label's CA chain as certs-only PKCS#7 (RFC 7030 §4.1)."""
    label = await _label(request)
    chain = await request.app[SERVICE].ca_certs(label)
    return _base64_response(messages.certs_only(chain), messages.CERTS_ONLY)


async def csrattrs(request: web.Request) -> web.Response:
    """GET /csrattrs: what the CSR should contain (RFC 7030 §4.5); 204 when nothing."""
    label = await _label(request)
    service = request.app[SERVICE]
    attrs, template = service.csr_attributes(label), service.csr_template(label)
    if not attrs and template is None:
        return web.Response(status=204)
    return _base64_response(messages.csrattrs_der(attrs, template), messages.CSRATTRS)


async def _enroll(request: web.Request, operation: est_api.EstOperation) -> web.Response:
    service = request.app[SERVICE]
    label = await _label(request)
    client = await auth.authenticate(
        request,
        service,
        label,
        request.app[AUTH],
        reenroll=operation is est_api.EstOperation.REENROLL,
    )
    # Where the client came from (behind a trusted proxy: the address it names) goes
    # into the audit trail with whatever it is issued.
    source = request.app[AUTH].client_key(request)
    client = replace(client, principal=replace(client.principal, source=source))
    if not messages.is_pkcs10(request.headers.get("Content-Type", "")):
        raise messages.EstError(415, "the request body must be application/pkcs10 (RFC 7030 4.2.1)")
    body = await body_reader.read(request)
    csr = service.parse_csr(messages.csr_der_from_body(body))
    outcome = await service.enroll(label, csr, client=client, operation=operation)
    if isinstance(outcome, est_api.EnrollmentPending):
        # RFC 7030 §4.2.3: accepted, not yet issued; retry after the given delay.
        return web.Response(
            status=202,
            text=f"enrollment {outcome.id} awaits approval\n",
            headers={"Retry-After": str(outcome.retry_after)},
        )
    if operation is est_api.EstOperation.SERVERKEYGEN:
        body, content_type = messages.serverkeygen_multipart(
            outcome.private_key_der or b"", outcome.certificate
        )
        return web.Response(body=body, headers={"Content-Type": content_type})
    return _base64_response(messages.certs_only([outcome.certificate]), messages.CERTS_ONLY)


async def simpleenroll(request: web.Request) -> web.Response:
    """POST /simpleenroll (RFC 7030 §4.2.1)."""
    return await _enroll(request, est_api.EstOperation.ENROLL)


async def simplereenroll(request: web.Request) -> web.Response:
    """POST /simplereenroll (RFC 7030 §4.2.2): renew with the current cert as TLS client cert."""
    return await _enroll(request, est_api.EstOperation.REENROLL)


async def serverkeygen(request: web.Request) -> web.Response:
    """POST /serverkeygen (RFC 7030 §4.4): the server makes the key pair."""
    return await _enroll(request, est_api.EstOperation.SERVERKEYGEN)


async def fullcmc(request: web.Request) -> web.Response:
    """POST /fullcmc (RFC 7030 §4.3): not implemented."""
    await _label(request)
    raise messages.EstError(501, "fullcmc (RFC 7030 4.3) is not implemented by privca")
