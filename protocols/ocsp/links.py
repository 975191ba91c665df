"""The only place OCSP URLs are built (they match ``CAEngine.urls_for``)."""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX"]

PREFIX: Final = "/ocsp"
