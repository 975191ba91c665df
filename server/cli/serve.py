"""``privca serve``: its options (listeners, workers, EST proxy, ``--acme-*``) and the run.

Each option overrides the matching configuration file setting; the server itself
is ``server.app.run_server``.
"""

from __future__ import annotations

import argparse
from typing import Any

from server.cli.options import STORAGE, Subparsers
from server.config import ConfigError, Settings

__all__ = ["apply_acme_flags", "apply_est_flags", "register", "serve"]


def _add_acme_flags(serve: argparse.ArgumentParser) -> None:
    """Add the ACME options of ``privca serve`` (each also settable under ``[acme]``)."""
    serve.add_argument(
        "--acme-resolve-all-to",
        metavar="IP",
        help="ACME test mode: validate every identifier at IP",
    )
    serve.add_argument("--acme-http01-port", type=int, metavar="N", help="http-01 port (80)")
    serve.add_argument(
        "--acme-tlsalpn01-port", type=int, metavar="N", help="tls-alpn-01 port (443)"
    )
    serve.add_argument(
        "--acme-dns-resolver", metavar="HOST:PORT", help="DNS server for dns-01 lookups"
    )
    serve.add_argument(
        "--acme-eab-required", action="store_true", default=None, help="require EAB on newAccount"
    )


def apply_acme_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """Return settings with the ``--acme-*`` flags applied over the config file.

    Raises:
        ConfigError: a flag value the ``[acme]`` settings reject.
    """
    update: dict[str, Any] = {
        key: value
        for key, value in {
            "resolve_all_to": args.acme_resolve_all_to,
            "http01_port": args.acme_http01_port,
            "tlsalpn01_port": args.acme_tlsalpn01_port,
            "dns_resolver": args.acme_dns_resolver,
            "eab_required": args.acme_eab_required,
        }.items()
        if value is not None
    }
    if not update:
        return settings
    try:
        acme = type(settings.acme).model_validate(settings.acme.model_dump() | update)
    except ValueError as exc:
        raise ConfigError(f"invalid ACME option: {exc}") from exc
    return settings.model_copy(update={"acme": acme})


def apply_est_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """Return settings with ``--est-client-cert-header``/``--est-trusted-proxy`` applied.

    Raises:
        ConfigError: a flag value the ``[est]`` settings reject.
    """
    update: dict[str, Any] = {}
    if args.est_client_cert_header:
        update["client_cert_header"] = args.est_client_cert_header
    if args.est_trusted_proxy:
        update["trusted_proxies"] = list(args.est_trusted_proxy)
    if not update:
        return settings
    try:
        est = type(settings.est).model_validate(settings.est.model_dump() | update)
    except ValueError as exc:
        raise ConfigError(f"invalid EST option: {exc}") from exc
    return settings.model_copy(update={"est": est})


def _apply_workers(settings: Settings, args: argparse.Namespace) -> Settings:
    if args.workers is None:
        return settings
    if not 1 <= args.workers <= 64:
        raise ConfigError("--workers must be between 1 and 64")
    revocation = settings.revocation.model_copy(update={"workers": args.workers})
    return settings.model_copy(update={"revocation": revocation})


def _apply_metrics(settings: Settings, args: argparse.Namespace) -> Settings:
    if args.metrics_port is None:
        return settings
    if not 0 <= args.metrics_port <= 65535:
        raise ConfigError("--metrics-port must be between 0 and 65535")
    metrics = settings.metrics.model_copy(update={"port": args.metrics_port})
    return settings.model_copy(update={"metrics": metrics})


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Apply the serve flags over ``settings`` and run the server until it is stopped.

    Raises:
        ConfigError: a bad flag value.
    """
    settings = apply_est_flags(settings, args)
    settings = apply_acme_flags(settings, args)
    settings = _apply_workers(settings, args)
    settings = _apply_metrics(settings, args)
    if settings.metrics.port is not None:
        # Before the server (and prometheus_client) is imported: see server/metrics/process.py.
        from server.metrics import process

        process.prepare(settings.data_dir)
    from server.app import run, run_server  # the aiohttp stack, only for this command

    run(run_server(settings))
    return 0


def register(sub: Subparsers) -> None:
    """Add ``privca serve`` to the top-level subparsers."""
    p = sub.add_parser(
        "serve",
        help="run the HTTPS (ACME, EST) and HTTP (OCSP, CRL) server",
        parents=[STORAGE],
    )
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--https-port", type=int, help="HTTPS port (default 8443)")
    p.add_argument("--http-port", type=int, help="plain HTTP port (default 8080)")
    p.add_argument(
        "--workers", type=int, help="processes serving the HTTPS and HTTP ports (default 1)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus metrics on this port ([metrics] host, default 127.0.0.1)",
    )
    p.add_argument("--est-client-cert-header", help="header a TLS proxy forwards client certs in")
    p.add_argument(
        "--est-trusted-proxy", action="append", help="CIDR of a proxy allowed to forward certs"
    )
    _add_acme_flags(p)
