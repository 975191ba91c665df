"""The only place admin API URLs are built."""

from __future__ import annotations

import urllib.parse
from typing import Final

__all__ = [
    "OPENAPI",
    "PREFIX",
    "PROBLEM_TYPE",
    "ca_url",
    "certificate_url",
    "directory_url",
    "label_url",
]

PREFIX: Final = "/admin/v1"
OPENAPI: Final = "/openapi.json"
# RFC 9457 §3.1.1: a URI naming the problem kind (a URN: nothing to dereference).
PROBLEM_TYPE: Final = "urn:privca:problem:"


def ca_url(name: str) -> str:
    """Return the absolute path of a CA resource."""
    return f"{PREFIX}/cas/{urllib.parse.quote(name, safe='')}"


def certificate_url(serial_hex: str, ca_id: str) -> str:
    """Return the absolute path of a certificate resource (its issuer named: serials repeat)."""
    return f"{PREFIX}/certificates/{serial_hex}?ca={urllib.parse.quote(ca_id, safe='')}"


def label_url(name: str) -> str:
    """Return the absolute path of an EST label resource."""
    return f"{PREFIX}/est/labels/{urllib.parse.quote(name, safe='')}"


def directory_url(name: str) -> str:
    """Return the absolute path of a named ACME directory resource."""
    return f"{PREFIX}/acme/directories/{urllib.parse.quote(name, safe='')}"
