"""Reading request bodies: only ``identity`` bodies are read; anything else is the client's error.

No ACME, EST or OCSP client sends a compressed body (certbot, lego, acme.sh, libest,
curl and ``openssl ocsp`` do not), and RFC 8555, RFC 7030 and RFC 6960 define none. So
the listeners run with aiohttp's ``auto_decompress`` off (``SERVER_OPTIONS``): otherwise
aiohttp's parser answers a body that does not decode as its ``Content-Encoding`` says
with its own ``text/plain`` 400 before any handler runs, whenever the body arrives with
the request head. ``read`` then refuses every content coding but ``identity``
(``UnsupportedCodingError``, a 415 with ``Accept-Encoding: identity``, RFC 7231
§6.5.13 and §5.3.4), which each protocol's middleware renders as its own error.

Must not import the protocol packages: they import this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["ACCEPTED_CODINGS", "SERVER_OPTIONS", "UnsupportedCodingError", "read"]

ACCEPTED_CODINGS: Final = "identity"
# aiohttp server (RequestHandler) options of every listener and app: bodies stay as sent.
SERVER_OPTIONS: Final[Mapping[str, Any]] = {"auto_decompress": False}
_CHUNK: Final = 65536


class UnsupportedCodingError(web.HTTPUnsupportedMediaType):
    """A request body in a content coding other than identity (RFC 7231 §6.5.13)."""

    def __init__(self, coding: str) -> None:
        super().__init__(
            reason=f"request bodies are not accepted in Content-Encoding {coding!r}; send "
            f"them uncompressed ({ACCEPTED_CODINGS})",
            headers={hdrs.ACCEPT_ENCODING: ACCEPTED_CODINGS},
        )


def _refused_coding(request: web.Request) -> str | None:
    """Return the request's Content-Encoding when it names a coding other than identity."""
    values = request.headers.getall(hdrs.CONTENT_ENCODING, [])
    codings = [c.strip().lower() for value in values for c in value.split(",")]
    if all(c in ("", ACCEPTED_CODINGS) for c in codings):
        return None
    # Printable and short: the reason goes into a status line and a log line.
    shown = ", ".join(values)
    return shown[:40].encode("ascii", "replace").decode() if shown.isprintable() else "?"


async def read(request: web.Request, *, limit: int | None = None) -> bytes:
    """Return the body as sent, refusing content codings.

    Args:
        request: the request whose body to read.
        limit: the largest body accepted; None leaves it to the app's ``client_max_size``.

    Raises:
        UnsupportedCodingError: the body has a Content-Encoding other than identity.
        web.HTTPRequestEntityTooLarge: the body is larger than ``limit``.
        web.HTTPBadRequest: the body ended before its framing said it would, or the
            connection ended while it was read.
    """
    coding = _refused_coding(request)
    if coding is not None:
        raise UnsupportedCodingError(coding)
    try:
        if limit is None:
            return await request.read()
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        chunks: list[bytes] = []
        total = 0
        while chunk := await request.content.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=total)
            chunks.append(chunk)
        return b"".join(chunks)
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        raise web.HTTPBadRequest(reason="the request body is incomplete or malformed") from exc
    except ConnectionResetError as exc:
        # The connection ended mid-body: the client left, or the listener's body deadline
        # aborted it (aiohttp drops a framing error found after the head, so the read
        # waits). Nobody is left to answer; the 400 keeps it out of the unexpected errors.
        raise web.HTTPBadRequest(reason="the connection ended before the body did") from exc
