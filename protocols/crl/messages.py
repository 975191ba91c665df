"""CRL wire details: content type and caching headers (RFC 5280 §4.2.1.13, RFC 2585)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final

from server.ca.status import api as status_api

__all__ = ["CRL_TYPE", "crl_headers", "text_error"]

CRL_TYPE: Final = "application/pkix-crl"


def crl_headers(crl: status_api.CrlRecord, *, now: datetime | None = None) -> dict[str, str]:
    """Return Content-Type, Cache-Control, Last-Modified, Expires and ETag of a CRL."""
    now = now or datetime.now(UTC)
    max_age = max(0, int((crl.next_update - now).total_seconds()))
    return {
        "Content-Type": CRL_TYPE,
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        "Last-Modified": format_datetime(crl.this_update, usegmt=True),
        "Expires": format_datetime(crl.next_update, usegmt=True),
        "ETag": f'"{crl.ca_id}-{crl.number}-'
        + hashlib.sha1(crl.der, usedforsecurity=False).hexdigest()[:16]
        + '"',
    }


def text_error(reason: str) -> str:
    """Return a one-line text/plain error body."""
    return reason.rstrip("\n") + "\n"
