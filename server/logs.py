"""Log output: the text format or one JSON object per line (``[logging] format``).

Owns the root handler setup for ``privca`` processes (CLI, ``serve`` and its
workers) and the per-request context a JSON line carries. Imports no aiohttp:
the request middleware (``server.metrics.http``) fills the context.
"""

from __future__ import annotations

import contextvars
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ["REQUEST", "JsonFormatter", "RequestContext", "configure"]

_OURS: Final = "_privca_handler"
# Attributes aiohttp's access logger sets on its records -> request field names.
_ACCESS_FIELDS: Final = {
    "first_request_line": "line",
    "remote_address": "remote",
    "response_status": "status",
    "response_size": "size",
    "request_time_frac": "seconds",
}
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s%(worker)s: %(message)s"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a log line written while serving a request says about that request."""

    method: str
    path: str
    endpoint: str
    remote: str | None


# Set by the request middleware for the duration of one request (asyncio tasks copy it).
REQUEST: Final[contextvars.ContextVar[RequestContext | None]] = contextvars.ContextVar(
    "privca_request", default=None
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request fields."""

    def __init__(self, *, worker: str | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON (newlines inside values are escaped)."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            line["process"] = self._worker
        request = REQUEST.get()
        fields = {k: v for k, v in asdict(request).items() if v is not None} if request else {}
        # aiohttp's access log runs after the request context ends; it passes its own.
        fields.update(
            (name, getattr(record, attr))
            for attr, name in _ACCESS_FIELDS.items()
            if getattr(record, attr, None) is not None
        )
        if fields:
            line["request"] = fields
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _WorkerTag(logging.Filter):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self._tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._tag
        return True


def configure(fmt: str, *, level: int = logging.INFO, worker: str | None = None) -> None:
    """Send every log record to stderr in ``fmt`` ("text" or "json").

    Replaces the handler an earlier call installed; like ``logging.basicConfig``
    it leaves logging alone when someone else (a test runner) installed handlers.
    ``worker`` tags the lines of a ``serve --workers`` process.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if root.handlers:
        return
    handler = logging.StreamHandler()
    setattr(handler, _OURS, True)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker=worker))
    else:
        handler.addFilter(_WorkerTag(f"[{worker}]" if worker else ""))
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
