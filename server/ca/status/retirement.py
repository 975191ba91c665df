"""Retire delegated OCSP signers: destroy the keys of expired, replaced signers.

The responder rotates a CA's delegated signer at half its lifetime and never
reuses a replaced one, so without this every CA would leave about 24 key pairs a
year (30-day signers) in its token or in storage. A signer is retired once it is
no longer its CA's current signer (``StatusRepository.current_signer``) and its
certificate expired at least ``retain_after_expiry`` ago (nodes whose clocks lag,
and answers signed just before expiry, never need it then). Its key is destroyed
in its backend (``CAEngine.destroy_ocsp_signer_key``: token objects), then its
record with the key handle is dropped (a pkcs8 key is that blob) in one write with
the ``ocsp.signer-key-destroy`` audit record. The maintenance loop runs ``sweep``
under a leader lock, at most ``batch`` keys a round. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from server.ca.errors import EngineError
from server.ca.ports import Clock
from server.ca.status import ports as status_ports

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = ["RETAIN_AFTER_EXPIRY", "SignerRetirement"]

log = logging.getLogger(__name__)

RETAIN_AFTER_EXPIRY: Final = timedelta(days=1)
# Keys destroyed (or tried) per round: token calls are serialised per process, and
# signing must not wait behind a long cleanup.
_BATCH: Final = 20


class SignerRetirement:
    """Find retired delegated OCSP signers and destroy their keys."""

    def __init__(
        self,
        engine: CAEngine,
        store: status_ports.StatusRepository,
        *,
        clock: Clock,
        retain_after_expiry: timedelta = RETAIN_AFTER_EXPIRY,
        batch: int = _BATCH,
    ) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self.retain_after_expiry = retain_after_expiry
        self._batch = batch

    async def sweep(self) -> int:
        """Destroy up to ``batch`` retired signers' keys and drop their records; return how many.

        A key that cannot be destroyed now (token away, backend not configured on this
        node) is logged and kept, with its record, for a later round.
        """
        now = self._clock.now()
        tried = done = 0
        for ca in await self._engine.list_cas():
            signers = await self._store.list_signers(ca.id)
            if len(signers) < 2:
                continue  # the only signer is the current one
            current = await self._store.current_signer(ca.id)
            for signer in signers:
                if tried >= self._batch:
                    return done
                if current is not None and signer.serial == current.serial:
                    continue
                if signer.not_after + self.retain_after_expiry > now:
                    continue
                tried += 1
                try:
                    audit = await self._engine.destroy_ocsp_signer_key(
                        ca, serial=signer.serial, key=signer.key
                    )
                except EngineError as exc:
                    log.error(
                        "delegated OCSP signer %X of CA %s: key not destroyed: %s",
                        signer.serial,
                        ca.name,
                        exc.detail,
                    )
                    continue
                # The row and its record in one write; a failure here leaves both for the
                # next round (destroying a key that is gone already is not an error).
                await self._store.remove_signer(ca.id, signer.serial, audit=audit)
                done += 1
                log.info(
                    "delegated OCSP signer %X of CA %s retired: %s key %s destroyed",
                    signer.serial,
                    ca.name,
                    signer.key.backend,
                    signer.key.ref,
                )
        return done
