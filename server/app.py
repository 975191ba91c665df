"""aiohttp application factories and the ``serve`` loop.

Builds the HTTPS app (ACME, EST) and the plain-HTTP app (OCSP, CRL, caIssuers:
RFC 5280 says these are fetched without TLS), owns startup and cleanup.
Protocol packages are mounted here; nothing here builds certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from typing import Final

from aiohttp import web

from server.bootstrap import Services, TlsFiles, ensure_first_start, open_services
from server.ca.api import CAEngine
from server.config import Settings

__all__ = ["ENGINE", "SETTINGS", "create_http_app", "create_https_app", "run_server"]

log = logging.getLogger(__name__)

ENGINE: Final = web.AppKey("engine", CAEngine)
SETTINGS: Final = web.AppKey("settings", Settings)


def _base(services: Services) -> web.Application:
    app = web.Application(client_max_size=services.settings.max_body_bytes)
    app[ENGINE] = services.engine
    app[SETTINGS] = services.settings
    return app


def _https_base_url(settings: Settings) -> str:
    host = "localhost" if settings.host in {"127.0.0.1", "0.0.0.0", "::1", "::"} else settings.host  # noqa: S104
    return f"https://{host}:{settings.https_port}"


async def _index(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    base = _https_base_url(settings)
    return web.json_response(
        {
            "service": "privca",
            "acme_directory": f"{base}/acme/directory",
            "est": f"{base}/.well-known/est/",
            "revocation": settings.http_base_url,
        }
    )


def create_https_app(services: Services) -> web.Application:
    """Return the HTTPS application with every TLS protocol front end mounted."""
    app = _base(services)
    app.router.add_get("/", _index)
    return app


def create_http_app(services: Services) -> web.Application:
    """Return the plain-HTTP application (revocation and caIssuers)."""
    app = _base(services)
    app.router.add_get("/", _index)
    return app


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """Return the TLS context of the HTTPS listener (TLS 1.2+)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    return ctx


async def run_server(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run privca until SIGINT/SIGTERM (or cancellation), then shut down cleanly."""
    async with open_services(settings, create=True, serving=True) as services:
        tls = await ensure_first_start(services)
        https = web.AppRunner(create_https_app(services))
        http = web.AppRunner(create_http_app(services))
        await https.setup()
        await http.setup()
        try:
            await web.TCPSite(
                https, settings.host, settings.https_port, ssl_context=server_ssl_context(tls)
            ).start()
            await web.TCPSite(http, settings.host, settings.http_port).start()
            base = _https_base_url(settings)
            print(f"privca is running (data in {settings.data_dir})", flush=True)  # noqa: T201
            print(f"  HTTPS            {base}/", flush=True)  # noqa: T201
            print(f"  ACME directory   {base}/acme/directory", flush=True)  # noqa: T201
            print(f"  EST              {base}/.well-known/est/", flush=True)  # noqa: T201
            print(f"  OCSP/CRL (HTTP)  {settings.http_base_url}/", flush=True)  # noqa: T201
            print(f"  trust bundle     {tls.bundle}", flush=True)  # noqa: T201
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            if ready is not None:
                ready.set()
            await stop.wait()
            print("privca: shutting down", flush=True)  # noqa: T201
        finally:
            await https.cleanup()
            await http.cleanup()
