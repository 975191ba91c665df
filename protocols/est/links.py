"""The only place EST URLs are built (RFC 7030 §3.2.2)."""

from __future__ import annotations

from typing import Final

__all__ = ["OPERATIONS", "PREFIX"]

PREFIX: Final = "/.well-known/est"
OPERATIONS: Final = (
    "cacerts",
    "simpleenroll",
    "simplereenroll",
    "csrattrs",
    "serverkeygen",
    "fullcmc",
)
