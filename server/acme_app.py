"""Wiring of the ACME front end: engine facade + SQL repository + real network ports.

Kept out of ``server/app.py`` so that file only mounts the result at /acme.
"""

from __future__ import annotations

from aiohttp import web

from protocols.acme import network, routes
from server.bootstrap import Services
from server.ca.acme import api as acme_api
from server.store.acme_repository import SqlAcmeRepository

__all__ = ["build_acme_app", "build_registration"]


def build_registration(
    services: Services,
    *,
    ports: acme_api.ValidationPorts | None = None,
    repo: SqlAcmeRepository | None = None,
) -> acme_api.AcmeService:
    """Return the ACME state machine over this process's engine and database."""
    acme = services.settings.acme
    return acme_api.AcmeService(
        services.engine,
        repo or SqlAcmeRepository(services.db),
        ports=ports or network.default_ports(acme.dns_resolver),
        settings=acme.to_engine(),
    )


def build_acme_app(services: Services) -> web.Application:
    """Return the ACME sub-app (mount at /acme)."""
    fetcher = network.AiohttpFetcher()
    ports = acme_api.ValidationPorts(
        http=fetcher,
        dns=network.DnsResolver(services.settings.acme.dns_resolver),
        tls=network.AlpnProber(),
    )
    repo = SqlAcmeRepository(services.db)
    return routes.build_app(
        build_registration(services, ports=ports, repo=repo),
        client_max_size=services.settings.max_body_bytes,
        closers=[fetcher.close],
    )
