"""Keep the HTTPS listener's client-certificate trust anchors current while it runs.

Python's ssl refuses, in the handshake, a client certificate it cannot verify,
so every anchor an EST label trusts (and every privca CA, for re-enrollment)
must be in the listener's context. Labels and CAs added while privca runs are
added to the live context here; handshakes after that accept them. OpenSSL
cannot drop a loaded anchor: one removed from a label stays loaded until a
restart, and EST's own check (the label's anchors, read per request) refuses
its certificates.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import health

__all__ = ["REFRESH_SECONDS", "ClientAnchors"]

REFRESH_SECONDS: Final = 5.0
_log = logging.getLogger(__name__)


class ClientAnchors:
    """The anchors loaded into one TLS context, and their refresh from a source."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        source: Callable[[], Awaitable[Sequence[x509.Certificate]]],
        loaded: Iterable[x509.Certificate] = (),
    ) -> None:
        self._ctx = ctx
        self._source = source
        self._loaded = {c.public_bytes(serialization.Encoding.DER) for c in loaded}

    async def refresh(self) -> int:
        """Load every anchor the source names that is not loaded yet; return how many."""
        new = {
            der: cert
            for cert in await self._source()
            if (der := cert.public_bytes(serialization.Encoding.DER)) not in self._loaded
        }
        if new:
            self._ctx.load_verify_locations(
                cadata="".join(
                    c.public_bytes(serialization.Encoding.PEM).decode() for c in new.values()
                )
            )
            self._loaded.update(new)
            _log.info("TLS client trust: %d new anchor(s) loaded", len(new))
        return len(new)

    async def run(self, interval: float = REFRESH_SECONDS) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failed refresh is logged."""
        name = "TLS client trust refresh (keeping the loaded anchors)"
        loop_health = health.LoopHealth(name, _log)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving with the anchors already loaded
                loop_health.failed(exc)
            else:
                loop_health.succeeded()
