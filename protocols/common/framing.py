"""Malformed HTTP framing: aiohttp's 400 stays, its traceback becomes one log line.

When aiohttp's parser refuses a request (a bad request line, method or header,
invalid chunking, Content-Length with Transfer-Encoding...) the client gets a
``400`` from aiohttp itself, before any handler or middleware runs, and
``RequestHandler.handle_error`` logs "Error handling request" on
``aiohttp.server`` with the parser exception's full traceback, at ERROR. That
is a client's mistake, not ours: our rule is one line per bad input. aiohttp
offers no hook in front of that log call but the logger itself, so
``install`` puts a filter on ``aiohttp.server`` that rewrites exactly those
records (an ``HttpProcessingError``, the parser's exception family) into one
INFO line with the peer address and the parser's message. Every other record
of that logger, an unexpected exception in a handler included, passes
unchanged, traceback and all.

Must not import ``server``.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

__all__ = ["install"]

# Peer bytes end up in the message: keep the line short.
_MAX_MESSAGE: Final = 200


class _OneLine(logging.Filter):
    """Turn an ``aiohttp.server`` record about a parser error into one line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        # aiohttp logs these at ERROR (DEBUG for a first request with a bad method, the
        # usual TLS-on-the-plain-port noise): a client error is INFO at most.
        level = min(record.levelno, logging.INFO)
        if not logging.getLogger(record.name).isEnabledFor(level):
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        record.msg = "malformed request from %s: %s"
        record.args = (args[0] if args else "an unknown peer", _one_line(exc))
        record.exc_info = None
        record.exc_text = None
        record.levelno = level
        record.levelname = logging.getLevelName(level)
        return True


def _one_line(exc: HttpProcessingError) -> str:
    """Return the parser's message on one printable line, without its caret marker line."""
    lines = (line.strip() for line in (exc.message or type(exc).__name__).splitlines())
    text = " ".join(line for line in lines if line and set(line) != {"^"})
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def install() -> None:
    """Make aiohttp's parser errors log one line (idempotent: one filter per process)."""
    if not any(isinstance(f, _OneLine) for f in server_logger.filters):
        server_logger.addFilter(_OneLine())
