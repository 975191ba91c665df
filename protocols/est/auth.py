"""EST client authentication at the edge: TLS client certificate, RFC 9440 header, Basic.

Finds the credentials a request carries and asks the EST facade to verify
them; the facade decides trust, revocation and re-enrollment rules. A
forwarded certificate header is honoured only from configured proxy addresses.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.common.ratelimit import TokenBuckets
from protocols.est.messages import EstError
from server.ca.est import api as est_api

__all__ = ["AuthSettings", "authenticate", "parse_basic", "parse_forwarded_cert"]

log = logging.getLogger(__name__)

DEFAULT_CERT_HEADER: Final = "Client-Cert"
_MAX_HEADER_CERT: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Where a forwarded client certificate may come from."""

    client_cert_header: str = DEFAULT_CERT_HEADER
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Per client and process: every request. Failed logins are the engine's (shared) limit.
    requests: TokenBuckets = field(default_factory=lambda: TokenBuckets(0, 1))

    @classmethod
    def create(
        cls,
        header: str | None,
        proxies: Sequence[str],
        *,
        requests_per_second: float = 0,
        request_burst: int = 1,
    ) -> AuthSettings:
        """Parse proxy CIDRs (ValueError on a bad one) and set up the per-client request limit."""
        return cls(
            client_cert_header=header or DEFAULT_CERT_HEADER,
            trusted_proxies=tuple(ipaddress.ip_network(p, strict=False) for p in proxies),
            requests=TokenBuckets(requests_per_second, max(1, request_burst)),
        )

    def client_key(self, request: web.BaseRequest) -> str:
        """Return who the client is for rate limits: its address, or the one a proxy names.

        Behind a trusted proxy the last X-Forwarded-For hop is the client (the
        proxy appends it); without one every client shares the proxy's limit.
        """
        remote = request.remote or "unknown"
        if self.is_trusted_proxy(remote):
            forwarded = request.headers.get("X-Forwarded-For", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return remote

    def is_trusted_proxy(self, remote: str | None) -> bool:
        """Return True when ``remote`` is one of the configured proxies."""
        if not remote or not self.trusted_proxies:
            return False
        try:
            addr = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self.trusted_proxies)


def parse_basic(header: str) -> tuple[str, str]:
    """Return (username, password) of an ``Authorization: Basic`` header.

    Raises:
        EstError: 401 for another scheme or a malformed value.
    """
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise EstError(401, "only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise EstError(401, "malformed Basic credentials") from exc
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise EstError(401, "malformed Basic credentials")
    return username, password


def parse_forwarded_cert(value: str) -> bytes:
    """Return the DER certificate of an RFC 9440 ``Client-Cert`` value.

    Accepts the RFC 9440 byte sequence (``:base64:``) and, for proxies that
    send PEM (URL-encoded or not), PEM.

    Raises:
        EstError: 400 when the value is neither.
    """
    value = value.strip()
    if len(value) > _MAX_HEADER_CERT:
        raise EstError(400, "the forwarded client certificate is too large")
    try:
        if len(value) >= 2 and value.startswith(":") and value.endswith(":"):
            return base64.b64decode(value[1:-1], validate=True)
        text = urllib.parse.unquote(value) if "%" in value else value
        if "-----BEGIN" in text:
            return x509.load_pem_x509_certificate(text.encode()).public_bytes(
                serialization.Encoding.DER
            )
    except (binascii.Error, ValueError) as exc:
        raise EstError(400, "the forwarded client certificate does not decode") from exc
    raise EstError(400, "the forwarded client certificate is not RFC 9440 or PEM")


def client_cert_der(request: web.Request, settings: AuthSettings) -> bytes | None:
    """Return the client certificate of the TLS connection, or one a trusted proxy forwarded."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            return bytes(der)
    forwarded = request.headers.get(settings.client_cert_header)
    if forwarded is None:
        return None
    if not settings.is_trusted_proxy(request.remote):
        log.warning(
            "ignoring %s header from untrusted address %s",
            settings.client_cert_header,
            request.remote,
        )
        return None
    return parse_forwarded_cert(forwarded)


def _challenge(label: est_api.EstLabel, reason: str) -> EstError:
    realm = f"privca EST {label.name}".replace('"', "")
    return EstError(401, reason, headers={"WWW-Authenticate": f'Basic realm="{realm}"'})


async def authenticate(
    request: web.Request,
    service: est_api.EstService,
    label: est_api.EstLabel,
    settings: AuthSettings,
    *,
    reenroll: bool = False,
) -> est_api.ClientIdentity:
    """Authenticate an enrollment request (RFC 7030 §3.2.3, §3.3.2).

    A presented client certificate that the label accepts must be valid (the
    facade refuses it otherwise: 403); else HTTP Basic; no credentials: 401.
    Re-enrollment always needs a client certificate issued by privca.

    Raises:
        EstError: 401 with WWW-Authenticate for missing or wrong credentials, 403
            when authenticated by password but a certificate is required.
        EngineError: UNAUTHORIZED (403) for a refused client certificate; RATE_LIMITED
            and UNAVAILABLE (503 + Retry-After) from the failed-login limits.
    """
    cert_der = client_cert_der(request, settings)
    modes = label.auth_modes
    if cert_der is not None and (reenroll or est_api.AuthMode.CERT in modes):
        return await service.authenticate_certificate(label, cert_der, for_reenroll=reenroll)
    header = request.headers.get("Authorization")
    if header is not None and est_api.AuthMode.BASIC in modes:
        try:
            username, password = parse_basic(header)
        except EstError as err:
            raise _challenge(label, err.reason) from err
        client = settings.client_key(request)
        # The facade takes a failed-login token of the address and of the account
        # before checking (RATE_LIMITED: 503 + Retry-After when either is spent).
        identity = await service.authenticate_password(label, username, password, client=client)
        if identity is None:
            log.warning("EST: wrong password for %r from %s", username[:64], client)
            raise _challenge(label, "wrong username or password")
        if reenroll:
            raise EstError(403, "simplereenroll needs the current certificate as TLS client cert")
        return identity
    if reenroll:
        raise _challenge(label, "simplereenroll needs the current certificate as TLS client cert")
    if est_api.AuthMode.BASIC in modes:
        raise _challenge(label, "authentication required (HTTP Basic or a TLS client certificate)")
    raise _challenge(label, "authentication required (a TLS client certificate)")
