"""The authenticated EST client: what password and certificate login hand to enrollment.

``users.py`` and ``client_certs.py`` produce a ``ClientIdentity``; ``enrollment.py``
decides what it may ask for. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from server.ca.types import CA, Principal

__all__ = ["ClientIdentity"]


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """An authenticated EST client: who, and the certificate it presented (if any)."""

    principal: Principal
    certificate: x509.Certificate | None = None
    # Set when the client certificate was issued by one of privca's CAs.
    issuer_ca: CA | None = None
