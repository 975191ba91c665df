"""Failure reporting of background loops: one line per storage outage, one when it is back.

A loop that runs every second would otherwise log a traceback every second while
the database is away. Unexpected errors keep their traceback, every time.
Imports only the engine's errors.
"""

from __future__ import annotations

import logging

from server.ca.errors import StorageUnavailableError

__all__ = ["LoopHealth"]


class LoopHealth:
    """Report the outcome of each round of one background loop."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._log = logger
        self.storage_down = False

    def failed(self, exc: BaseException) -> None:
        """Log a failed round: storage outages once until they end, anything else always."""
        if isinstance(exc, StorageUnavailableError):
            if not self.storage_down:
                self.storage_down = True
                self._log.warning("%s: storage unavailable; retrying until it is back", self.name)
            return
        self._log.error("%s failed", self.name, exc_info=exc)

    def succeeded(self) -> None:
        """Note a good round (and log that storage is back after an outage)."""
        if self.storage_down:
            self.storage_down = False
            self._log.info("%s: storage is back", self.name)
