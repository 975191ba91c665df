"""The counted metric families of ``privca serve`` and what records into them.

Counters and histograms move when the thing happens (an issuance, a revocation,
a request); per-process figures (OCSP answer cache, database pool) are copied in
by ``sync_process`` every few seconds, never per request. Every label takes
values from a bounded set: CA names, profile names, a fixed protocol list,
route templates, ACME problem types or HTTP status classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.ca.api import CAEngine
from server.ca.errors import EngineError
from server.ca.status import api as status_api
from server.ca.types import CertificateRecord
from server.store.database import Database

__all__ = ["PROTOCOLS", "Families", "IssuanceCounter", "ProcessSync", "protocol_of"]

# Principal kinds (``CertificateRecord.requester`` is "kind:name") -> protocol label.
_KIND_PROTOCOL: Final = {
    "acme": "acme",
    "est-user": "est",
    "est-cert": "est",
    "operator": "cli",
    "admin": "admin",
    "matter": "matter",
    "system": "system",
}
PROTOCOLS: Final = frozenset({*_KIND_PROTOCOL.values(), "other"})
# OCSPResponseStatus (RFC 6960 §4.2.1) -> label.
_OCSP_STATUS: Final = {
    0: "successful",
    1: "malformedRequest",
    2: "internalError",
    3: "tryLater",
    5: "sigRequired",
    6: "unauthorized",
}
# Request latencies in seconds: OCSP/CRL answers take below a millisecond, ACME
# finalize and EST enrollment with RSA keys tens to hundreds.
_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def protocol_of(requester: str) -> str:
    """Return the protocol label of a certificate's requester ("acme:..." -> "acme")."""
    kind = requester.partition(":")[0]
    return _KIND_PROTOCOL.get(kind, "other")


class Families:
    """Every counted family, registered in ``registry``.

    In multiprocess mode the values live in the shared directory whatever the
    registry; the metrics listener reads them from there.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.issued = Counter(
            "privca_certificates_issued",
            "Certificates issued, by issuing CA, profile and the protocol that asked",
            ["ca", "profile", "protocol"],
            registry=registry,
        )
        self.revoked = Counter(
            "privca_certificates_revoked",
            "Certificates revoked, by issuing CA, profile and the protocol that issued them",
            ["ca", "profile", "protocol"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "privca_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["endpoint", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_errors = Counter(
            "privca_http_request_errors",
            "Requests answered with an error, by route template and ACME problem type "
            "(or HTTP status class)",
            ["endpoint", "method", "problem"],
            registry=registry,
        )
        self.ocsp_cache = Counter(
            "privca_ocsp_cache_answers",
            "OCSP answers served from the in-memory answer cache (hit) or not (miss)",
            ["result"],
            registry=registry,
        )
        self.ocsp_lean = Counter(
            "privca_ocsp_lean_answers",
            "OCSP answers sent by the lean OCSP protocol (the OCSP port's hot path, outside "
            "the request histogram), by OCSPResponseStatus",
            ["status"],
            registry=registry,
        )
        self.db_in_use = Gauge(
            "privca_db_connections_in_use",
            "Database connections checked out of the pools (summed over live processes)",
            registry=registry,
            multiprocess_mode="livesum",
        )


class IssuanceCounter:
    """A status listener of the engine that counts issuances and revocations."""

    def __init__(self, families: Families, engine: CAEngine) -> None:
        self._families = families
        self._engine = engine

    def attach(self) -> IssuanceCounter:
        """Register with the engine; return self."""
        self._engine.add_status_listener(self)
        return self

    async def _labels(self, record: CertificateRecord) -> tuple[str, str, str]:
        try:
            ca = (await self._engine.get_ca(record.ca_id)).name
        except EngineError:
            ca = record.ca_id
        return ca, record.profile, protocol_of(record.requester)

    async def issued(self, record: CertificateRecord) -> None:
        """Count a stored issuance."""
        self._families.issued.labels(*await self._labels(record)).inc()

    async def revoked(self, record: CertificateRecord) -> None:
        """Count a revocation."""
        self._families.revoked.labels(*await self._labels(record)).inc()


class ProcessSync:
    """Copy this process's OCSP-cache counts and pool use into the families."""

    def __init__(
        self, families: Families, db: Database, status: status_api.StatusService | None
    ) -> None:
        self._families = families
        self._db = db
        self._status = status
        self._hits = 0
        self._misses = 0
        self._lean: Mapping[int, int] = {}
        self._lean_seen: dict[int, int] = {}

    def watch_lean(self, answers: Mapping[int, int]) -> None:
        """Publish the lean OCSP protocol's answer counts (``LeanSite.answers``) too."""
        self._lean = answers

    def sync(self) -> None:
        """Publish what changed since the last call."""
        self._families.db_in_use.set(self._db.connections_in_use())
        for status, count in list(self._lean.items()):
            seen = self._lean_seen.get(status, 0)
            if count > seen:
                name = _OCSP_STATUS.get(status, "other")
                self._families.ocsp_lean.labels(name).inc(count - seen)
                self._lean_seen[status] = count
        if self._status is None:
            return
        responder = self._status.responder
        hits, misses = responder.cache_hits, responder.cache_misses
        if hits > self._hits:
            self._families.ocsp_cache.labels("hit").inc(hits - self._hits)
        if misses > self._misses:
            self._families.ocsp_cache.labels("miss").inc(misses - self._misses)
        self._hits, self._misses = hits, misses
