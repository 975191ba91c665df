"""Row conversions every repository shares (times, serials)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware", "aware_or_none", "serial_key"]


def aware(value: datetime) -> datetime:
    """Return ``value`` as aware UTC (SQLite hands back naive datetimes)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def aware_or_none(value: datetime | None) -> datetime | None:
    """Return ``aware(value)``, passing None through."""
    return None if value is None else aware(value)


def serial_key(serial: int) -> str:
    """Return the stored form of a serial: uppercase hex without leading zeros."""
    return format(serial, "X")
