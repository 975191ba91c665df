"""aiohttp application factories and the ``serve`` loop.

Builds the HTTPS app (ACME, EST) and the plain-HTTP app (OCSP, CRL, caIssuers:
RFC 5280 says these are fetched without TLS), owns startup and cleanup.
Protocol packages are mounted here over the services ``server.wiring`` builds;
nothing here opens storage or builds certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, Final

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.acme import network
from protocols.acme import routes as acme_routes
from protocols.admin import links as admin_links
from protocols.admin import routes as admin_routes
from protocols.ca_issuers import links as ca_issuers_links
from protocols.ca_issuers import routes as ca_issuers_routes
from protocols.common import body, framing, guard
from protocols.crl import links as crl_links
from protocols.crl import routes as crl_routes
from protocols.est import links as est_links
from protocols.est import routes as est_routes
from protocols.ocsp import lean as ocsp_lean
from protocols.ocsp import links as ocsp_links
from protocols.ocsp import routes as ocsp_routes
from server import logs, wiring, workers
from server.ca import health
from server.ca.acme import api as acme_api
from server.ca.admin import api as admin_api
from server.ca.api import CAEngine
from server.ca.est import api as est_api
from server.ca.status import api as status_api
from server.config import ConfigError, Settings
from server.metrics import process as metrics_process
from server.metrics.runtime import ProcessMetrics
from server.tls_anchors import ClientAnchors
from server.tls_listener import ListenerCertificate

__all__ = ["ENGINE", "SETTINGS", "create_http_app", "create_https_app", "run", "run_server"]

log = logging.getLogger(__name__)

ENGINE: Final = web.AppKey("engine", CAEngine)
_X509_V_FLAG_NO_CHECK_TIME: Final = 0x200000
SETTINGS: Final = web.AppKey("settings", Settings)
# A 90-day certificate is renewed after 60 days; checking hourly is ample.
_TLS_RENEW_CHECK_SECONDS: Final = 3600.0


def _base(services: wiring.Services, metrics: ProcessMetrics | None) -> web.Application:
    # aiohttp answers malformed framing with its own 400, before any middleware: make its
    # log record one line without a traceback.
    framing.install()
    middlewares = [metrics.middleware()] if metrics is not None else []
    app = web.Application(
        client_max_size=services.settings.max_body_bytes,
        middlewares=middlewares,
        # Bodies stay as sent: the front ends refuse content codings with their own errors.
        handler_args=body.SERVER_OPTIONS,
    )
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
            "admin": f"{base}{admin_links.PREFIX}/",
            "revocation": settings.http_base_url,
        }
    )


def _acme_app(services: wiring.Services, *, maintenance: bool) -> web.Application:
    """Return the ACME sub-app (mount at /acme) with the real network validation ports.

    ``maintenance`` runs the recovery of claims dead processes left (every node's
    main process; each claim ends once however many sweep).
    """
    permit = wiring.validation_permit(services)
    fetcher = network.AiohttpFetcher(permit)
    ports = acme_api.ValidationPorts(
        http=fetcher,
        dns=network.DnsResolver(services.settings.acme.dns_resolver),
        tls=network.AlpnProber(permit),
    )
    acme = services.settings.acme
    # One bounded queue of background validations for every directory of the process.
    queue = acme_api.ValidationQueue(
        limit=acme.validation_queue, concurrency=acme.validation_concurrency
    )
    service = wiring.build_acme_service(services, ports=ports, queue=queue)
    app = acme_routes.build_app(
        service,
        directories=wiring.build_acme_directories(services, ports=ports, queue=queue),
        client_max_size=services.settings.max_body_bytes,
        closers=[fetcher.close],
    )
    if maintenance:
        # One sweep for every directory: their orders and authorizations share the tables.
        app.cleanup_ctx.append(_background(service.recovery.run, name="acme-recovery"))
    return app


def _background(
    run: Callable[[], Coroutine[Any, Any, None]], *, name: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run ``run()`` as a task while the app lives."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return ctx


def create_https_app(
    services: wiring.Services,
    *,
    est_service: est_api.EstService | None = None,
    admin_service: admin_api.AdminService | None = None,
    metrics: ProcessMetrics | None = None,
    maintenance: bool = False,
) -> web.Application:
    """Return the HTTPS application with every TLS protocol front end mounted.

    ``maintenance`` runs background recovery here (the main process of a node).
    """
    app = _base(services, metrics)
    app.router.add_get("/", _index)
    app.add_subapp("/acme", _acme_app(services, maintenance=maintenance))
    app.add_subapp(
        admin_links.PREFIX,
        admin_routes.build_app(
            admin_service or wiring.build_admin_service(services),
            max_body_bytes=services.settings.max_body_bytes,
        ),
    )
    est = services.settings.est
    app.add_subapp(
        est_links.PREFIX,
        est_routes.build_app(
            est_service or wiring.build_est_service(services),
            client_cert_header=est.client_cert_header,
            trusted_proxies=est.trusted_proxies,
            max_body_bytes=services.settings.max_body_bytes,
            requests_per_second=est.requests_per_second,
            request_burst=est.request_burst,
        ),
    )
    return app


def _status_context(
    status: status_api.StatusService, *, maintenance: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run the revocation services' background work while the HTTP app lives."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        await status.start()
        tasks = [asyncio.create_task(status.run_pollers(), name="ocsp-poll")]
        if maintenance:
            tasks.append(asyncio.create_task(status.run_maintenance(), name="crl-ocsp-refresh"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return ctx


def create_http_app(
    services: wiring.Services,
    *,
    maintenance: bool = True,
    metrics: ProcessMetrics | None = None,
) -> web.Application:
    """Return the plain-HTTP application (revocation and caIssuers).

    ``maintenance`` runs CRL regeneration and OCSP refresh here (off in extra workers).
    """
    app = _base(services, metrics)
    app.router.add_get("/", _index)
    if services.status is not None:
        status = services.status
        app.add_subapp(
            ocsp_links.PREFIX,
            ocsp_routes.build_app(
                status, max_request_bytes=services.settings.revocation.ocsp_max_request_bytes
            ),
        )
        app.add_subapp(crl_links.PREFIX, crl_routes.build_app(status))
        app.add_subapp(ca_issuers_links.PREFIX, ca_issuers_routes.build_app(status))
        app.cleanup_ctx.append(_status_context(status, maintenance=maintenance))
    return app


def server_ssl_context(
    tls: wiring.TlsFiles, client_cas: Sequence[x509.Certificate] = ()
) -> ssl.SSLContext:
    """Return the TLS context of the HTTPS listener (TLS 1.2+).

    With ``client_cas`` the listener asks for (but does not require) a client
    certificate, for EST: Python's ssl cannot accept a client certificate it
    cannot verify, so every anchor any EST label trusts must be loaded here.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: minting them (a copy of the session, with the client
    # certificate decoded again) cost 0.4 ms of a 2.2 ms client-certificate handshake,
    # and privca's clients gain nothing from them: ACME clients keep connections
    # alive, EST devices come back after the tickets' two hours.
    ctx.num_tickets = 0
    ctx.load_cert_chain(tls.cert, tls.key)
    if client_cas:
        ctx.load_verify_locations(
            cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in client_cas)
        )
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # OpenSSL's X509_V_FLAG_NO_CHECK_TIME: an expired client certificate still completes
        # the handshake so EST can answer 403 with a reason; the EST facade checks validity
        # (and trust, and revocation) of every client certificate itself.
        ctx.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
    return ctx


@contextlib.asynccontextmanager
async def _listeners(
    services: wiring.Services,
    tls: wiring.TlsFiles,
    est_service: est_api.EstService,
    *,
    maintenance: bool,
    reuse_port: bool | None,
    metrics: ProcessMetrics | None = None,
) -> AsyncIterator[None]:
    """Serve HTTPS (ACME, EST) and HTTP (OCSP, CRL, caIssuers) until the block ends.

    The HTTPS context's client trust is kept current by a background refresh
    (``ClientAnchors``) for as long as the listeners run.
    """
    settings = services.settings
    admin_service = wiring.build_admin_service(services, est=est_service)

    async def client_anchors() -> list[x509.Certificate]:
        # EST's anchors and the admin CA: each front end checks its own (EST never
        # trusts the admin CA, the admin API nothing but it), the handshake only
        # has to let both kinds of client certificate through.
        return [*await est_service.tls_trust_anchors(), *await admin_service.admin_anchors()]

    anchors = await client_anchors()
    ssl_context = server_ssl_context(tls, anchors)
    refresh = ClientAnchors(ssl_context, client_anchors, anchors)
    trust_refresh = asyncio.create_task(refresh.run(), name="privca-tls-client-trust")
    # Renewed by the main process or replaced by the operator: every process reloads it.
    own_cert = ListenerCertificate(ssl_context, tls.cert, tls.key)
    cert_reload = asyncio.create_task(own_cert.run(), name="privca-tls-cert-reload")
    https = web.AppRunner(
        create_https_app(
            services,
            est_service=est_service,
            admin_service=admin_service,
            metrics=metrics,
            maintenance=maintenance,
        )
    )
    http = web.AppRunner(
        create_http_app(services, maintenance=maintenance, metrics=metrics),
        **_http_runner_options(settings),
    )
    await https.setup()
    await http.setup()
    stop_http: Callable[[], Awaitable[None]] | None = None
    https_listener = guard.Listener(_listener_limits(settings))
    try:
        await https_listener.start(
            _connections_of(https),
            settings.host,
            settings.https_port,
            ssl_context=ssl_context,
            reuse_port=reuse_port,
        )
        stop_http = await _start_http_site(http, services, reuse_port=reuse_port, metrics=metrics)
        yield
    finally:
        trust_refresh.cancel()
        cert_reload.cancel()
        https_listener.close()
        if stop_http is not None:
            await stop_http()
        await https.cleanup()
        await http.cleanup()


async def run_server(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run privca until SIGINT/SIGTERM (or cancellation), then shut down cleanly."""
    # Before anything else: a stale privca on this data dir is stopped, a live one refuses us.
    with workers.PidFile(settings.data_dir).held() as pid_file:
        async with wiring.open_services(settings, create=True, serving=True) as services:
            await _serve(services, settings, pid_file, ready)


async def _serve(
    services: wiring.Services,
    settings: Settings,
    pid_file: workers.PidFile,
    ready: asyncio.Event | None,
) -> None:
    tls = await wiring.ensure_first_start(services)
    est_service = wiring.build_est_service(services)
    for est_label in await est_service.list_labels():
        await est_service.check_label(est_label)
    # A config directory's CA must exist (stored ones were checked when added).
    await wiring.build_acme_directories(services).check_config()
    extra_workers = settings.revocation.workers - 1
    metrics = _process_metrics(services, workers=extra_workers)
    # Before the banner: a Ctrl-C right after it must shut down cleanly (exit 0).
    stop = _stop_on_signals()
    procs: list[BaseProcess] = []
    renewal = (
        asyncio.create_task(_renew_tls(services, tls), name="privca-tls-renewal")
        if tls.managed
        else None
    )
    async with (
        _metrics_running(metrics, listener=True),
        _listeners(
            services,
            tls,
            est_service,
            maintenance=True,
            reuse_port=extra_workers > 0 or None,
            metrics=metrics,
        ),
    ):
        try:
            procs = workers.start(_worker_main, (settings, tls), extra_workers)
            pid_file.add_workers([proc.pid for proc in procs])
            base = _https_base_url(settings)
            print(f"privca is running (data in {settings.data_dir})", flush=True)  # noqa: T201
            print(f"  HTTPS            {base}/", flush=True)  # noqa: T201
            print(f"  ACME directory   {base}/acme/directory", flush=True)  # noqa: T201
            print(f"  EST              {base}/.well-known/est/", flush=True)  # noqa: T201
            print(f"  admin API        {base}{admin_links.PREFIX}/", flush=True)  # noqa: T201
            print(f"  OCSP/CRL (HTTP)  {settings.http_base_url}/", flush=True)  # noqa: T201
            print(f"  trust bundle     {tls.bundle}", flush=True)  # noqa: T201
            if metrics is not None and metrics.url is not None:
                print(f"  metrics          {metrics.url}", flush=True)  # noqa: T201
            if ready is not None:
                ready.set()
            _freeze_startup_objects()
            await stop.wait()
            print("privca: shutting down", flush=True)  # noqa: T201
        finally:
            if renewal is not None:
                renewal.cancel()
            await asyncio.to_thread(_stop_workers, procs)


async def _renew_tls(services: wiring.Services, tls: wiring.TlsFiles) -> None:
    """Renew the self-issued HTTPS certificate 2/3 through its life (main process only)."""
    loop_health = health.LoopHealth("HTTPS certificate renewal", log)
    while True:
        await asyncio.sleep(_TLS_RENEW_CHECK_SECONDS)
        try:
            await wiring.renew_tls(services.engine, tls, names=services.settings.tls_names)
        except Exception as exc:  # noqa: BLE001 - task supervisor: the current one keeps serving
            loop_health.failed(exc)
        else:
            loop_health.succeeded()


# ---------------------------------------------------------------------- worker processes
# `serve --workers N`: N-1 extra processes serve both listeners (HTTPS: ACME, EST;
# HTTP: OCSP, CRL, caIssuers) on the same ports with SO_REUSEPORT, sharing the
# database; the kernel spreads connections over the processes. Every piece of
# protocol state (nonces, orders, rate limits, pending enrollments, OCSP answers)
# lives in the database, so any process can answer any request. Workers run no
# background maintenance (CRL schedule, OCSP refresh, ACME claim recovery): the main
# process does, under the same leader locks or compare-and-set writes every node
# uses; workers only poll for replaced responses.


async def _start_http_site(
    runner: web.AppRunner,
    services: wiring.Services,
    *,
    reuse_port: bool | None,
    metrics: ProcessMetrics | None = None,
) -> Callable[[], Awaitable[None]]:
    """Listen on the HTTP port (OCSP answered by the lean protocol); return the stopper."""
    settings = services.settings
    if services.status is None:
        listener = guard.Listener(_listener_limits(settings))
        await listener.start(
            _connections_of(runner), settings.host, settings.http_port, reuse_port=reuse_port
        )

        async def stop() -> None:
            listener.close()

        return stop
    lean = ocsp_lean.LeanSite(
        runner,
        services.status,
        max_request_bytes=settings.revocation.ocsp_max_request_bytes,
        limits=_listener_limits(settings),
    )
    await lean.start(settings.host, settings.http_port, reuse_port=reuse_port)
    if metrics is not None:
        metrics.watch_lean(lean.answers)
    return lean.stop


def _stop_on_signals() -> asyncio.Event:
    """Return an event that SIGINT and SIGTERM set (where the loop supports signals)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _freeze_startup_objects() -> None:
    """Move what start-up built (modules, settings, caches) out of the collector's way.

    Every full collection would otherwise walk those few hundred thousand
    long-lived objects again, a pause of milliseconds in the middle of answers.
    """
    gc.collect()
    gc.freeze()


def _listener_limits(settings: Settings) -> guard.Limits:
    # aiohttp has no head/body read deadline and no connection cap: the guard adds them.
    return guard.Limits(
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=settings.max_connections,
    )


def _connections_of(runner: web.AppRunner) -> Callable[[], asyncio.Protocol]:
    if runner.server is None:
        raise RuntimeError("set the runner up before listening")
    return runner.server


def _http_runner_options(settings: Settings) -> dict[str, Any]:
    # One access-log line per OCSP answer would cost more than the answer itself.
    return {} if settings.revocation.http_access_log else {"access_log": None}


def _stop_workers(procs: list[BaseProcess]) -> None:
    workers.stop(procs)
    for proc in procs:
        if proc.pid is not None:
            metrics_process.mark_dead(proc.pid)


def _process_metrics(services: wiring.Services, *, workers: int) -> ProcessMetrics | None:
    """Return this process's metrics, or None when no metrics port is configured.

    Raises:
        ConfigError: extra workers without the multiprocess directory (their counts
            would be lost); ``privca serve`` prepares it.
    """
    if services.settings.metrics.port is None:
        return None
    if workers > 0 and not metrics_process.is_active():
        raise ConfigError(
            f"metrics with --workers need {metrics_process.ENV} (set by `privca serve`)"
        )
    return ProcessMetrics(services)


def _metrics_running(
    metrics: ProcessMetrics | None, *, listener: bool
) -> contextlib.AbstractAsyncContextManager[None]:
    return metrics.running(listener=listener) if metrics is not None else contextlib.nullcontext()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server coroutine on uvloop when it is installed (libuv: cheaper per request)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _worker_main(settings: Settings, tls: wiring.TlsFiles, parent_pid: int) -> None:
    """Run one worker process (both listeners) until SIGTERM/SIGINT or its parent's end."""
    workers.die_with_parent(parent_pid)
    logs.configure(settings.logging.format, worker="worker")
    with contextlib.suppress(KeyboardInterrupt):
        run(_worker(settings, tls))


async def _worker(settings: Settings, tls: wiring.TlsFiles) -> None:
    async with wiring.open_services(settings) as services:
        est_service = wiring.build_est_service(services)
        stop = _stop_on_signals()
        metrics = ProcessMetrics(services) if settings.metrics.port is not None else None
        async with (
            _metrics_running(metrics, listener=False),
            _listeners(
                services, tls, est_service, maintenance=False, reuse_port=True, metrics=metrics
            ),
        ):
            _freeze_startup_objects()
            await stop.wait()
