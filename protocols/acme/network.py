"""The network ports of ACME validation: http-01 fetches, TXT lookups, tls-alpn-01 probes.

Implements ``server.ca.acme.api.HttpFetcher``, ``TxtResolver`` and
``TlsAlpnProber`` with aiohttp, dnspython and asyncio's ssl. The engine wraps
each call in a timeout; these classes only do the I/O and map failures to
``NetworkError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Final

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from server.ca.acme import api as acme_api

__all__ = ["AiohttpFetcher", "AlpnProber", "DnsResolver", "default_ports"]

_MAX_BODY: Final = 8192
_ALPN: Final = "acme-tls/1"

log = logging.getLogger(__name__)

Permit = Callable[[str], bool]
"""Whether validation may connect to an IP address (the engine's deny-list)."""


def _default_permit(address: str) -> bool:
    return acme_api.target_permitted(address, acme_api.ValidationSettings())


class _PermittedResolver(AbstractResolver):
    """Resolves like aiohttp, then drops addresses validation may not connect to."""

    def __init__(self, permit: Permit) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._permit = permit

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self._permit(r["host"])]
        if not allowed:
            raise OSError(f"{host} has no permitted address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class AiohttpFetcher:
    """http-01 fetches: plain HTTP, no redirects, body capped at 8 KiB, permitted targets only."""

    def __init__(self, permit: Permit = _default_permit) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._permit = permit

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    force_close=True, limit=64, resolver=_PermittedResolver(self._permit)
                ),
                auto_decompress=False,
            )
        return self._session

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        """GET ``path`` from ``address:port`` with ``Host: host``."""
        # aiohttp skips the resolver for IP literals: check them here.
        if acme_api.is_ip_literal(address) and not self._permit(address):
            raise acme_api.NetworkError(
                "connection", f"http://{host}:{port}{path}: not a permitted validation target"
            )
        netloc = f"[{address}]" if ":" in address else address
        url = f"http://{netloc}:{port}{path}"
        try:
            async with self._client().get(
                url,
                headers={"Host": host, "User-Agent": "privca-acme-validator"},
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(_MAX_BODY)
                return acme_api.FetchResult(status=resp.status, body=body)
        except (aiohttp.ClientError, OSError) as exc:
            # Refused, unreachable and filtered look alike to the client (no scan oracle).
            log.info("http-01 fetch of %s:%d failed: %r", address, port, exc)
            raise acme_api.NetworkError(
                "connection", f"could not fetch http://{host}:{port}{path}"
            ) from exc

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()


class DnsResolver:
    """TXT lookups through the system resolver or one configured server."""

    def __init__(self, server: str | None = None, *, timeout: float = 5.0) -> None:
        if server:
            host, _, port = server.rpartition(":")
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [host.strip("[]")]
            resolver.port = int(port)
        else:
            resolver = dns.asyncresolver.Resolver()
        resolver.lifetime = timeout
        self._resolver = resolver

    async def txt(self, name: str) -> Sequence[str]:
        """Return the TXT strings at ``name`` (empty when there are none)."""
        try:
            answer = await self._resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise acme_api.NetworkError(
                "dns", f"TXT lookup of {name} failed: {type(exc).__name__}"
            ) from exc
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


class AlpnProber:
    """tls-alpn-01 probes: TLS with ALPN acme-tls/1 and SNI, certificate not verified."""

    def __init__(self, permit: Permit = _default_permit) -> None:
        self._permit = permit
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = (
            ssl.CERT_NONE
        )  # RFC 8737: the self-signed challenge cert is checked by hand
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols([_ALPN])
        self._ctx = ctx

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        """Return the DER certificate served for ``server_name`` under acme-tls/1."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                address, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            log.info("tls-alpn-01 lookup of %s failed: %r", address, exc)
            raise acme_api.NetworkError("connection", f"could not connect to {address}") from exc
        targets = [str(info[4][0]) for info in infos if self._permit(str(info[4][0]))]
        if not targets:
            raise acme_api.NetworkError(
                "connection", f"{address}: not a permitted validation target"
            )
        try:
            _, writer = await asyncio.open_connection(
                targets[0], port, ssl=self._ctx, server_hostname=server_name
            )
        except ssl.SSLError as exc:
            raise acme_api.NetworkError(
                "tls", f"TLS handshake with {address}:{port} failed"
            ) from exc
        except OSError as exc:
            log.info("tls-alpn-01 connect to %s:%d failed: %r", targets[0], port, exc)
            raise acme_api.NetworkError(
                "connection", f"could not connect to {address}:{port}"
            ) from exc
        try:
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is None or sslobj.selected_alpn_protocol() != _ALPN:
                raise acme_api.NetworkError("tls", f"{address}:{port} did not negotiate {_ALPN}")
            der = sslobj.getpeercert(binary_form=True)
            if not der:
                raise acme_api.NetworkError("tls", f"{address}:{port} sent no certificate")
            return bytes(der)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


def default_ports(
    dns_server: str | None = None, *, permit: Permit = _default_permit
) -> acme_api.ValidationPorts:
    """Return the real network ports (``dns_server`` as HOST:PORT, or the system resolver).

    ``permit`` is the engine's target check (``acme_api.target_permitted`` over the
    configured validation settings); every address connected to passes it.
    """
    return acme_api.ValidationPorts(
        http=AiohttpFetcher(permit), dns=DnsResolver(dns_server), tls=AlpnProber(permit)
    )
