"""Database gauges: CA expiry, CRL age, expiring leaves and pending approvals, read on scrape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from server.app import create_https_app
from server.ca.est import api as est_api
from server.ca.types import RevocationReason
from server.metrics.gauges import SnapshotCollector
from server.store import gauges
from server.wiring import Services, build_est_service
from tests.protocols.est.conftest import PASSWORD, PKCS10, b64, basic, csr_der
from tests.server.metrics.conftest import OP, ClientFactory, issue


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _scrape(services: Services, clock: _Clock) -> CollectorRegistry:
    collector = SnapshotCollector(services.db, now=clock)
    await collector.refresh()
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


async def test_ca_expiry_days(services: Services) -> None:
    clock = _Clock()
    issuing = await services.engine.get_ca(None)
    registry = await _scrape(services, clock)
    days = registry.get_sample_value("privca_ca_certificate_expiry_days", {"ca": "issuing"})
    expected = (issuing.certificate.not_valid_after_utc - clock.now).total_seconds() / 86400
    assert days is not None
    assert abs(days - expected) < 1e-6
    # Computed at scrape time: ten days later, ten days fewer (no new database read).
    clock.now += timedelta(days=10)
    later = registry.get_sample_value("privca_ca_certificate_expiry_days", {"ca": "issuing"})
    assert later is not None
    assert abs(later - (expected - 10)) < 1e-6


async def test_crl_age_and_time_to_next_update(services: Services) -> None:
    assert services.status is not None
    clock = _Clock()
    registry = await _scrape(services, clock)
    assert registry.get_sample_value("privca_crl_age_seconds", {"ca": "issuing"}) is None
    crl = await services.status.generate_crl("issuing", actor="test")
    clock.now = crl.this_update + timedelta(seconds=100)
    registry = await _scrape(services, clock)
    assert registry.get_sample_value("privca_crl_age_seconds", {"ca": "issuing"}) == 100
    left = registry.get_sample_value("privca_crl_next_update_seconds", {"ca": "issuing"})
    assert left == (crl.next_update - clock.now).total_seconds()


async def test_expiring_leaves_per_ca_and_window(services: Services) -> None:
    clock = _Clock()
    await issue(services, days=5, name="a.internal")
    await issue(services, days=20, name="b.internal")
    await issue(services, days=60, name="c.internal")
    _, revoked = await issue(services, days=3, name="d.internal")
    await services.engine.revoke(revoked.serial, principal=OP, reason=RevocationReason.SUPERSEDED)
    # A CA certificate expiring soon is the CA-expiry gauge's business, not a leaf.
    await services.engine.create_subordinate(
        "short-sub", parent="root", actor=OP, path_length=0, lifetime=timedelta(days=6)
    )
    registry = await _scrape(services, clock)
    assert (
        registry.get_sample_value(
            "privca_certificates_expiring", {"ca": "root", "within_days": "7"}
        )
        == 0
    )
    short = registry.get_sample_value("privca_ca_certificate_expiry_days", {"ca": "short-sub"})
    assert short is not None
    assert 5.9 < short < 6.1

    def expiring(days: int) -> float | None:
        return registry.get_sample_value(
            "privca_certificates_expiring", {"ca": "issuing", "within_days": str(days)}
        )

    assert expiring(7) == 1  # the revoked one is not counted
    assert expiring(30) == 2
    assert (
        registry.get_sample_value(
            "privca_certificates_expiring", {"ca": "root", "within_days": "30"}
        )
        == 0
    )
    # Ten days on: the 5-day leaf has expired, the 20-day one is within a week.
    clock.now += timedelta(days=10)
    registry = await _scrape(services, clock)
    assert expiring(7) == 0
    assert expiring(30) == 1


async def test_pending_approvals_by_label(
    services: Services, aiohttp_client: ClientFactory
) -> None:
    est = build_est_service(services)
    await est.add_label(est_api.EstLabel(name="manual", approval_required=True), actor=OP)
    await est.add_user("manual", "dev1", PASSWORD, actor=OP)
    clock = _Clock()
    registry = await _scrape(services, clock)
    assert registry.get_sample_value("privca_est_pending_approvals", {"label": "manual"}) == 0
    client = await aiohttp_client(create_https_app(services, est_service=est))
    for device in ("door-lock-7", "door-lock-8"):
        der, _ = csr_der(device)
        resp = await client.post(
            "/.well-known/est/manual/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
        )
        assert resp.status == 202
    registry = await _scrape(services, clock)
    assert registry.get_sample_value("privca_est_pending_approvals", {"label": "manual"}) == 2
    first, _ = await est.list_pending()
    await est.decide(first.id, approve=False, actor=OP)
    snapshot = await gauges.read_snapshot(services.db, now=clock.now)
    assert snapshot.pending_approvals == {"manual": 1}
