"""The only place CRL URLs are built (they match ``CAEngine.urls_for``)."""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX", "crl_url"]

PREFIX: Final = "/crl"


def crl_url(base: str, ca_id: str) -> str:
    """Return the CRL distribution point URL of a CA."""
    return f"{base.rstrip('/')}{PREFIX}/{ca_id}.crl"
