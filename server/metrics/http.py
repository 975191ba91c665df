"""The request middleware that times every aiohttp request, and the metrics listener.

The middleware labels requests by route template (``/acme/order/{order_id}``),
never by raw path, so random paths cannot create series: whatever matched no
route is ``unmatched``. It also sets the request context JSON log lines carry.
The listener is a separate aiohttp site (default 127.0.0.1) answering
``GET /metrics`` in the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.registry import Collector

from server import logs
from server.ca.errors import ProblemKind
from server.metrics import process
from server.metrics.families import Families

__all__ = [
    "CONTENT_TYPE",
    "UNMATCHED",
    "Middleware",
    "build_app",
    "endpoint_of",
    "exposition_registry",
    "middleware",
    "start",
]

UNMATCHED: Final = "unmatched"
_ACME_URN: Final = "urn:ietf:params:acme:error:"
_PROBLEM_TYPES: Final = frozenset(str(k) for k in ProblemKind)
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_PROBLEM_JSON: Final = "application/problem+json"
# The classic text format every Prometheus reads; every privca name and label is
# plain [a-z_], so the library's output is exactly this format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def endpoint_of(request: web.Request) -> str:
    """Return the route template that matched (with its sub-app prefix), or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def _method(request: web.Request) -> str:
    return request.method if request.method in _METHODS else "OTHER"


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def _problem(response: web.StreamResponse) -> str:
    """Return the ACME problem type of an error response, else its status class."""
    if isinstance(response, web.Response) and response.content_type == _PROBLEM_JSON:
        body = response.body
        if isinstance(body, bytes):
            try:
                kind = json.loads(body).get("type", "")
            except (ValueError, AttributeError):
                kind = ""
            if isinstance(kind, str) and kind.startswith(_ACME_URN):
                name = kind.removeprefix(_ACME_URN)
                if name in _PROBLEM_TYPES:
                    return name
    return _status_class(response.status)


def middleware(families: Families) -> Middleware:
    """Return the middleware timing requests and counting errors into ``families``."""

    # Label children per (endpoint, method): bounded like the labels, and .labels()
    # costs about as much as the observation itself (~3.5 us each, measured).
    timers: dict[tuple[str, str], Histogram] = {}

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = endpoint_of(request)
        method = _method(request)
        token = logs.REQUEST.set(
            logs.RequestContext(
                method=request.method, path=request.path, endpoint=endpoint, remote=request.remote
            )
        )
        started = time.perf_counter()
        problem: str | None = None
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                problem = _status_class(exc.status)
            raise
        except BaseException:
            problem = "5xx"
            raise
        else:
            if response.status >= 400:
                problem = _problem(response)
            return response
        finally:
            timer = timers.get((endpoint, method))
            if timer is None:
                timer = timers[endpoint, method] = families.request_seconds.labels(endpoint, method)
            timer.observe(time.perf_counter() - started)
            if problem is not None:
                families.request_errors.labels(endpoint, method, problem).inc()
            logs.REQUEST.reset(token)

    return observe


def exposition_registry(
    families_registry: CollectorRegistry | None, *collectors: Collector
) -> CollectorRegistry:
    """Return the registry a scrape reads.

    Multiprocess mode: the shared directory (every process's counters) plus
    ``collectors``; otherwise ``families_registry`` with ``collectors`` added.
    """
    if process.is_active() or families_registry is None:
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped library
    else:
        registry = families_registry
    for collector in collectors:
        registry.register(collector)
    return registry


def build_app(registry: CollectorRegistry) -> web.Application:
    """Return the metrics application: ``GET /metrics`` in the Prometheus text format."""

    async def metrics(_request: web.Request) -> web.Response:
        # Multiprocess mode reads one file per process and family: off the loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def start(registry: CollectorRegistry, *, host: str, port: int) -> web.AppRunner:
    """Serve ``build_app(registry)`` on host:port; return the runner to clean up."""
    runner = web.AppRunner(build_app(registry), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
