"""OCSP wire details: content types, the RFC 5019 GET encoding, response headers.

Decoding never trusts the input: bad base64 or URL escapes become
``EngineError(MALFORMED)``, which the middleware renders as malformedRequest.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Final
from urllib.parse import unquote_to_bytes

from server.ca.errors import EngineError, ProblemKind
from server.ca.status import api as status_api

__all__ = [
    "INTERNAL_ERROR",
    "MALFORMED_REQUEST",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "decode_get",
    "error_headers",
    "response_headers",
    "unsuccessful_body",
    "unsuccessful_status",
]

REQUEST_TYPE: Final = "application/ocsp-request"
RESPONSE_TYPE: Final = "application/ocsp-response"

# OCSPResponseStatus (RFC 6960 §4.2.1) per engine problem kind.
MALFORMED_REQUEST: Final = 1
INTERNAL_ERROR: Final = 2
_TRY_LATER: Final = 3
_UNAUTHORIZED: Final = 6
_STATUS: Final[dict[ProblemKind, int]] = {
    ProblemKind.MALFORMED: MALFORMED_REQUEST,
    ProblemKind.UNAUTHORIZED: _UNAUTHORIZED,
    ProblemKind.NOT_FOUND: _UNAUTHORIZED,
    ProblemKind.POLICY: _UNAUTHORIZED,
    ProblemKind.UNAVAILABLE: _TRY_LATER,
    ProblemKind.RATE_LIMITED: _TRY_LATER,
}
_B64: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def decode_get(raw_tail: str, *, max_bytes: int) -> bytes:
    """Return the DER request in a GET path tail: URL-encoded base64 (RFC 5019 §5).

    URL-safe base64 and missing padding are tolerated; anything else is MALFORMED.
    """
    if len(raw_tail) > max_bytes * 2:
        raise EngineError(ProblemKind.MALFORMED, "the request is too large")
    text = unquote_to_bytes(raw_tail).replace(b"-", b"+").replace(b"_", b"/")
    text = text.replace(b"\r", b"").replace(b"\n", b"")
    if not text or not _B64.issuperset(text):
        raise EngineError(ProblemKind.MALFORMED, "the GET path is not base64")
    text = text.rstrip(b"=")
    text += b"=" * (-len(text) % 4)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EngineError(ProblemKind.MALFORMED, "the GET path is not base64") from exc
    if len(der) > max_bytes:
        raise EngineError(ProblemKind.MALFORMED, "the request is too large")
    return der


def response_headers(answer: status_api.OcspAnswer) -> dict[str, str]:
    """Return Content-Type and the RFC 5019 §6 caching headers of an answer."""
    if not answer.cacheable:
        return {"Content-Type": RESPONSE_TYPE, "Cache-Control": "no-cache, no-store"}
    max_age = max(0, int(answer.next_update_ts - time.time()))
    return {
        "Content-Type": RESPONSE_TYPE,
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        "Last-Modified": answer.last_modified,
        "Expires": answer.expires,
        "ETag": answer.etag,
    }


def unsuccessful_status(kind: ProblemKind) -> int:
    """Return the OCSPResponseStatus for an engine problem (internalError if unmapped)."""
    return _STATUS.get(kind, INTERNAL_ERROR)


def unsuccessful_body(status: int) -> bytes:
    """Return an OCSPResponse with an error status and no responseBytes (sent with HTTP 200)."""
    return bytes([0x30, 0x03, 0x0A, 0x01, status])


def error_headers() -> dict[str, str]:
    """Return the headers of an unsuccessful response: never cached."""
    return {"Content-Type": RESPONSE_TYPE, "Cache-Control": "no-cache, no-store"}
