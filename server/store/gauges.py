"""SQL for the operations gauges: CA expiry, CRL age, expiring leaves, pending approvals.

One read model for ``server.metrics`` (refreshed every few seconds, never per
request): four small statements, each one grouped scan over an indexed column.
Returns plain values keyed by CA name or EST label; no engine state changes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, cast

from cryptography import x509
from sqlalchemy import Table, case, func, select

from server.ca.est.ports import PendingStatus
from server.ca.types import CertStatus
from server.store import convert
from server.store.database import Database
from server.store.est_models import EstLabelRow, EstPendingRow
from server.store.models import CARow, CertificateRow, CrlRow

__all__ = ["EXPIRY_WINDOWS", "CrlTimes", "Snapshot", "read_snapshot"]

# Days ahead the "leaves expiring within" gauge counts (one grouped query for both).
EXPIRY_WINDOWS: Final = (7, 30)

_CA = cast(Table, CARow.__table__)
_CERT = cast(Table, CertificateRow.__table__)
_CRL = cast(Table, CrlRow.__table__)
_PENDING = cast(Table, EstPendingRow.__table__)
_LABEL = cast(Table, EstLabelRow.__table__)


@dataclass(frozen=True, slots=True)
class CrlTimes:
    """thisUpdate and nextUpdate of a CA's newest CRL."""

    this_update: datetime
    next_update: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The gauges' source values at ``taken_at`` (ages are computed at scrape time)."""

    taken_at: datetime
    ca_not_after: dict[str, datetime]
    crls: dict[str, CrlTimes]
    # (CA name, window in days) -> valid leaves whose notAfter falls within the window.
    expiring: dict[tuple[str, int], int]
    pending_approvals: dict[str, int]


async def read_snapshot(db: Database, *, now: datetime) -> Snapshot:
    """Read every gauge source in four statements."""
    cas = await db.fetch_all(select(_CA.c.id, _CA.c.name, _CA.c.cert_der))
    names = {row.id: row.name for row in cas}
    not_after = {
        row.name: x509.load_der_x509_certificate(row.cert_der).not_valid_after_utc
        for row in cas
        if row.cert_der is not None
    }
    crl_rows = await db.fetch_all(
        select(
            _CRL.c.ca_id,
            func.max(_CRL.c.this_update).label("this_update"),
            func.max(_CRL.c.next_update).label("next_update"),
        ).group_by(_CRL.c.ca_id)
    )
    crls = {
        names.get(row.ca_id, row.ca_id): CrlTimes(
            this_update=convert.aware(row.this_update),
            next_update=convert.aware(row.next_update),
        )
        for row in crl_rows
    }
    return Snapshot(
        taken_at=now,
        ca_not_after=not_after,
        crls=crls,
        expiring=await _expiring(db, now=now, names=names),
        pending_approvals=await _pending(db),
    )


async def _expiring(
    db: Database, *, now: datetime, names: dict[str, str]
) -> dict[tuple[str, int], int]:
    # One scan of the notAfter index over the widest window; narrower windows are sums.
    widest = max(EXPIRY_WINDOWS)
    columns = [
        func.sum(case((_CERT.c.not_after <= now + timedelta(days=days), 1), else_=0)).label(
            f"within_{days}"
        )
        for days in EXPIRY_WINDOWS
    ]
    rows = await db.fetch_all(
        select(_CERT.c.ca_id, *columns)
        .where(
            _CERT.c.not_after > now,
            _CERT.c.not_after <= now + timedelta(days=widest),
            _CERT.c.status == str(CertStatus.VALID),
            _CERT.c.is_ca.is_(False),
        )
        .group_by(_CERT.c.ca_id)
    )
    out = {(name, days): 0 for name in names.values() for days in EXPIRY_WINDOWS}
    for row in rows:
        name = names.get(row.ca_id, row.ca_id)
        for days in EXPIRY_WINDOWS:
            out[name, days] = int(getattr(row, f"within_{days}") or 0)
    return out


async def _pending(db: Database) -> dict[str, int]:
    rows = await db.fetch_all(
        select(_PENDING.c.label, func.count().label("n"))
        .where(_PENDING.c.status == str(PendingStatus.PENDING))
        .group_by(_PENDING.c.label)
    )
    # Stored labels show 0 rather than vanishing when their queue empties.
    out = {row.name: 0 for row in await db.fetch_all(select(_LABEL.c.name))}
    out.update({row.label: int(row.n) for row in rows})
    return out
