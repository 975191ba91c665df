"""caIssuers wire details (RFC 5280 §4.2.2.1: a single DER certificate)."""

from __future__ import annotations

from typing import Final

__all__ = ["CERT_TYPE", "MAX_AGE"]

CERT_TYPE: Final = "application/pkix-cert"
MAX_AGE: Final = 3600
