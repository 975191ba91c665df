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
        if request is not None:
            line["request"] = {k: v for k, v in asdict(request).items() if v is not None}
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
    """Send every log record to stderr in ``fmt`` ("text" or "json"), replacing handlers.

    ``worker`` tags the lines of a ``serve --workers`` process.
    """
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker=worker))
    else:
        handler.addFilter(_WorkerTag(f"[{worker}]" if worker else ""))
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
