"""Keep the HTTPS listener's own certificate current in a running process.

``serve`` renews its self-issued certificate (``server.wiring.renew_tls``) and an
operator may replace ``tls_cert_file``/``tls_key_file`` at any time: every
serving process watches the two files and loads a changed pair into its live
``SSLContext``; handshakes after that present the new certificate, connections
already open keep theirs. A pair that does not load (a key written before its
certificate, a half-copied file) is tried again on the next poll while the
loaded one keeps serving. Must not build certificates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Final

from server.ca import health

__all__ = ["RELOAD_SECONDS", "ListenerCertificate"]

RELOAD_SECONDS: Final = 5.0
_log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], ...]


class ListenerCertificate:
    """The certificate and key files loaded into one live server context."""

    def __init__(self, ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
        self._ctx = ctx
        self._cert = cert
        self._key = key
        self._loaded = self._stamp()

    def _stamp(self) -> _Stamp:
        stats = (os.stat(self._cert), os.stat(self._key))
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def reload_if_changed(self) -> bool:
        """Load the files into the live context if they changed and form a valid pair.

        Returns:
            True when a new pair was loaded.

        Raises:
            OSError, ssl.SSLError: the files are missing or do not (yet) form a pair;
                the context keeps the pair it had.
        """
        stamp = self._stamp()
        if stamp == self._loaded:
            return False
        # Probe a scratch context first: a failed load into the live one could leave
        # it without a certificate until the next poll.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self._cert, self._key)
        self._ctx.load_cert_chain(self._cert, self._key)
        self._loaded = stamp
        _log.info("HTTPS listener: certificate %s reloaded", self._cert)
        return True

    async def run(self, interval: float = RELOAD_SECONDS) -> None:
        """Check the files every ``interval`` seconds until cancelled."""
        loop_health = health.LoopHealth("HTTPS certificate reload (keeping the loaded one)", _log)
        while True:
            await asyncio.sleep(interval)
            try:
                self.reload_if_changed()
            except (OSError, ssl.SSLError) as exc:
                loop_health.failed(exc)
            else:
                loop_health.succeeded()
