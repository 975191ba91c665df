"""The only place OCSP URLs are built (they match ``CAEngine.urls_for``)."""

from __future__ import annotations

from typing import Final

__all__ = ["PREFIX", "get_url"]

PREFIX: Final = "/ocsp"


def get_url(base: str, request_b64_urlencoded: str) -> str:
    """Return the RFC 5019 GET URL of an encoded request under ``base``."""
    return f"{base.rstrip('/')}{PREFIX}/{request_b64_urlencoded}"
