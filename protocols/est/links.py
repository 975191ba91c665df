"""The only place EST URLs are built (RFC 7030 §3.2.2)."""

from __future__ import annotations

from typing import Final

__all__ = ["OPERATIONS", "PREFIX", "operation_url"]

PREFIX: Final = "/.well-known/est"
OPERATIONS: Final = (
    "cacerts",
    "simpleenroll",
    "simplereenroll",
    "csrattrs",
    "serverkeygen",
    "fullcmc",
)


def operation_url(base: str, operation: str, label: str | None = None) -> str:
    """Return ``{base}/.well-known/est[/{label}]/{operation}``."""
    middle = f"/{label}" if label else ""
    return f"{base.rstrip('/')}{PREFIX}{middle}/{operation}"
