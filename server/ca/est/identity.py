"""The authenticated EST client: what password and certificate login hand to enrollment.

``users.py`` and ``client_certs.py`` produce a ``ClientIdentity``; ``enrollment.py``
decides what it may ask for. The principal names the label the client logged in
to (``est-user:LABEL/name``, ``est-cert:LABEL/subject#serial``) and is stored as
the requester of what it is issued, which is how a certificate's label is known
later (``issued_on``). Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509

from server.ca.types import CA, Principal

__all__ = ["CERT_KIND", "USER_KIND", "ClientIdentity", "issued_on", "principal"]

USER_KIND: Final = "est-user"
CERT_KIND: Final = "est-cert"


def principal(kind: str, label: str, who: str) -> Principal:
    """Return the principal of a client of ``label`` (label names never hold '/')."""
    return Principal(kind, f"{label}/{who}")


def issued_on(requester: str) -> str | None:
    """Return the EST label a certificate was issued on, from its stored requester.

    None for a certificate issued outside EST (CLI, ACME, Matter).
    """
    kind, sep, rest = requester.partition(":")
    if not sep or kind not in {USER_KIND, CERT_KIND} or "/" not in rest:
        return None
    return rest.partition("/")[0]


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """An authenticated EST client: who, and the certificate it presented (if any)."""

    principal: Principal
    certificate: x509.Certificate | None = None
    # Set when the client certificate was issued by one of privca's CAs.
    issuer_ca: CA | None = None
    # The profile privca issued that certificate with (a renewal keeps it).
    profile: str | None = None
    # A Basic account's narrowing of the label's grant (None: the label's).
    dns_suffixes: tuple[str, ...] | None = None
    subject_patterns: tuple[str, ...] | None = None
    max_days: int | None = None
