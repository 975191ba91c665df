"""The only place caIssuers URLs are built (they match ``CAEngine.urls_for``)."""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX", "ca_url"]

PREFIX: Final = "/ca"


def ca_url(base: str, ca_id: str) -> str:
    """Return the caIssuers URL of a CA certificate."""
    return f"{base.rstrip('/')}{PREFIX}/{ca_id}.cer"
