"""One serving process's metrics: the families it records into and its background work.

Every process (the parent and each ``--workers`` process) counts its own
issuances, revocations and requests and publishes its pool and OCSP-cache
figures; only the parent reads the database gauges and serves the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from server import wiring
from server.metrics import families, gauges, http, process

__all__ = ["ProcessMetrics"]

log = logging.getLogger(__name__)


class ProcessMetrics:
    """The metric families of this process, hooked to its engine."""

    def __init__(self, services: wiring.Services) -> None:
        self._services = services
        self.settings = services.settings.metrics
        # Multiprocess mode keeps values in the shared directory; a registry is only
        # needed (and used for exposition) when this process is the only one.
        self.registry = None if process.is_active() else CollectorRegistry()
        self.families = families.Families(self.registry)
        families.IssuanceCounter(self.families, services.engine).attach()
        self._sync = families.ProcessSync(self.families, services.db, services.status)
        self.snapshot = gauges.SnapshotCollector(services.db)
        # The listener's bound (host, port) once it runs (port 0 picks a free one).
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str | None:
        """Return the listener's ``/metrics`` URL once it runs."""
        if self.address is None:
            return None
        host, port = self.address
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def watch_lean(self, answers: Mapping[int, int]) -> None:
        """Publish the lean OCSP protocol's answer counts with the process figures."""
        self._sync.watch_lean(answers)

    def middleware(self) -> http.Middleware:
        """Return the request middleware recording into this process's families."""
        return http.middleware(self.families)

    async def _sync_loop(self) -> None:
        while True:
            try:
                self._sync.sync()
            except Exception:  # a task supervisor: the next round tries again
                log.exception("metrics: publishing process figures failed")
            await asyncio.sleep(self.settings.refresh_seconds)

    @contextlib.asynccontextmanager
    async def running(self, *, listener: bool) -> AsyncIterator[None]:
        """Publish this process's figures; with ``listener`` also serve ``/metrics``."""
        tasks = [asyncio.create_task(self._sync_loop(), name="metrics-sync")]
        runner: web.AppRunner | None = None
        try:
            if listener and self.settings.port is not None:
                await self.snapshot.refresh()
                tasks.append(
                    asyncio.create_task(
                        self.snapshot.run(self.settings.refresh_seconds), name="metrics-gauges"
                    )
                )
                registry = http.exposition_registry(self.registry, self.snapshot)
                runner = await http.start(
                    registry, host=self.settings.host, port=self.settings.port
                )
                host, port = runner.addresses[0][:2]
                self.address = (str(host), int(port))
                log.info("metrics listener on %s", self.url)
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
