"""The network ports of ACME validation: http-01 fetches, TXT lookups, tls-alpn-01 probes.

Implements ``server.ca.acme.api.HttpFetcher``, ``TxtResolver`` and
``TlsAlpnProber`` with aiohttp, dnspython and asyncio's ssl. The engine wraps
each call in a timeout; these classes only do the I/O and map failures to
``NetworkError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Final

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.resolver

from server.ca.acme import api as acme_api

__all__ = ["AiohttpFetcher", "AlpnProber", "DnsResolver", "default_ports"]

_MAX_BODY: Final = 8192
_ALPN: Final = "acme-tls/1"


class AiohttpFetcher:
    """http-01 fetches: plain HTTP, no redirects, body capped at 8 KiB."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, limit=64),
                auto_decompress=False,
            )
        return self._session

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        """GET ``path`` from ``address:port`` with ``Host: host``."""
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
            raise acme_api.NetworkError(
                "connection", f"could not fetch http://{host}:{port}{path}: {type(exc).__name__}"
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

    def __init__(self) -> None:
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
            _, writer = await asyncio.open_connection(
                address, port, ssl=self._ctx, server_hostname=server_name
            )
        except ssl.SSLError as exc:
            raise acme_api.NetworkError(
                "tls", f"TLS handshake with {address}:{port} failed"
            ) from exc
        except OSError as exc:
            raise acme_api.NetworkError(
                "connection", f"could not connect to {address}:{port}: {type(exc).__name__}"
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


def default_ports(dns_server: str | None = None) -> acme_api.ValidationPorts:
    """Return the real network ports (``dns_server`` as HOST:PORT, or the system resolver)."""
    return acme_api.ValidationPorts(
        http=AiohttpFetcher(), dns=DnsResolver(dns_server), tls=AlpnProber()
    )
