"""On-scrape gauges from the database read model (``server.store.gauges``).

A background task re-reads the snapshot every ``refresh_seconds``; a scrape only
turns the last snapshot into gauges, computing ages against the clock at scrape
time. Runs in the process that serves the metrics listener (the parent), since
these figures are the database's, not any one process's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.store import gauges
from server.store.database import Database

__all__ = ["SnapshotCollector"]

log = logging.getLogger(__name__)
_DAY = 86400.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SnapshotCollector(Collector):
    """Gauges for CA expiry, CRL age, expiring leaves and pending EST approvals."""

    def __init__(self, db: Database, *, now: Callable[[], datetime] = _utcnow) -> None:
        self._db = db
        self._now = now
        self.snapshot: gauges.Snapshot | None = None

    async def refresh(self) -> None:
        """Re-read the snapshot from the database."""
        self.snapshot = await gauges.read_snapshot(self._db, now=self._now())

    async def run(self, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled (a failed read keeps the last)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # a task supervisor: the next round tries again
                log.exception("metrics: reading the database gauges failed")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges of the last snapshot (nothing before the first read)."""
        snap = self.snapshot
        if snap is None:
            return
        now = self._now()
        ca_days = GaugeMetricFamily(
            "privca_ca_certificate_expiry_days",
            "Days until the CA certificate's notAfter (negative once expired)",
            labels=["ca"],
        )
        for ca, not_after in sorted(snap.ca_not_after.items()):
            ca_days.add_metric([ca], (not_after - now).total_seconds() / _DAY)
        crl_age = GaugeMetricFamily(
            "privca_crl_age_seconds",
            "Seconds since thisUpdate of the CA's newest CRL",
            labels=["ca"],
        )
        crl_left = GaugeMetricFamily(
            "privca_crl_next_update_seconds",
            "Seconds until nextUpdate of the CA's newest CRL (negative: relying parties "
            "treat it as stale)",
            labels=["ca"],
        )
        for ca, times in sorted(snap.crls.items()):
            crl_age.add_metric([ca], (now - times.this_update).total_seconds())
            crl_left.add_metric([ca], (times.next_update - now).total_seconds())
        expiring = GaugeMetricFamily(
            "privca_certificates_expiring",
            "Valid leaf certificates whose notAfter falls within the window, by issuing CA",
            labels=["ca", "within_days"],
        )
        for (ca, days), count in sorted(snap.expiring.items()):
            expiring.add_metric([ca, str(days)], count)
        pending = GaugeMetricFamily(
            "privca_est_pending_approvals",
            "EST enrollments waiting for manual approval, by label",
            labels=["label"],
        )
        for label, count in sorted(snap.pending_approvals.items()):
            pending.add_metric([label], count)
        refreshed = GaugeMetricFamily(
            "privca_gauges_refreshed_timestamp_seconds",
            "When the database gauges were last read (Unix time)",
            value=snap.taken_at.timestamp(),
        )
        yield from (ca_days, crl_age, crl_left, expiring, pending, refreshed)
