"""CRL publication: the latest CRL per CA, debounced regeneration, schedule, leader lock.

A revocation marks its CA's CRL dirty (in storage, so the CLI and other
nodes count too); ``tick`` regenerates dirty CRLs once the debounce has
passed and any CRL past half its validity. Exactly one node regenerates a
given CA's CRL at a time (``StatusRepository.leader``: a PostgreSQL advisory
lock). Entries are read as (serial, time, reason) only, encoded to DER once
(``crl_codec``) and kept, so a regeneration re-reads and re-encodes only
the revocations since the last one.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from server.ca import lifecycle
from server.ca.errors import EngineError, ProblemKind, StorageUnavailableError
from server.ca.ports import Clock, Repository, SystemClock
from server.ca.status import crl_codec
from server.ca.status import ports as status_ports
from server.ca.types import CA, AuditEvent, CAId, CrlRecord

if TYPE_CHECKING:
    from server.ca.api import CAEngine

__all__ = ["CrlPublisher", "CrlSettings"]

log = logging.getLogger(__name__)

_CACHE_SECONDS: Final = 1.0
_ENTRY_OVERLAP_S: Final = 120
# A request finding another holder making the CA's CRL waits this long for it.
_WAIT_FOR_OTHER_S: Final = 5.0
_WAIT_STEP_S: Final = 0.1


@dataclass(frozen=True, slots=True)
class CrlSettings:
    """CRL behaviour; validated by ``server.config``."""

    validity: timedelta = timedelta(days=1)
    debounce: timedelta = timedelta(seconds=2)
    # Regenerate once this fraction of the validity has passed (RFC 5280 §5.1.2.5).
    renew_fraction: float = 0.5


@dataclass(slots=True)
class _Entries:
    """A CA's CRL entries encoded so far; revocations are append-only, so only news is read."""

    encoded: list[bytes] = field(default_factory=list)
    serials: set[int] = field(default_factory=set)
    newest: int | None = None  # epoch seconds

    def add(self, entries: Sequence[status_ports.RevokedEntry], *, default_time: datetime) -> None:
        seen = self.serials
        fresh = [e for e in entries if e.serial not in seen] if seen else entries
        self.encoded.extend(crl_codec.encode_entries(fresh, default_time=default_time))
        self.serials.update(e.serial for e in fresh)
        times = [e.revoked_at for e in fresh if e.revoked_at is not None]
        if times:
            newest = max(times)
            self.newest = newest if self.newest is None else max(self.newest, newest)


class CrlPublisher:
    """Serves the latest CRL of each CA and keeps it fresh."""

    def __init__(
        self,
        engine: CAEngine,
        repo: Repository,
        store: status_ports.StatusRepository,
        *,
        settings: CrlSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._store = store
        self.settings = settings or CrlSettings()
        self._clock = clock or SystemClock()
        self._latest: dict[CAId, tuple[float, CrlRecord]] = {}
        self._entries: dict[CAId, _Entries] = {}
        self.wake = asyncio.Event()

    async def regenerate(
        self,
        ca: CA,
        *,
        actor: str = "system:crl",
        source: str = "",
        validity: timedelta | None = None,
    ) -> CrlRecord | None:
        """Build, sign and keep a new CRL unless another node is doing it (then None).

        ``validity`` overrides the configured one (an offline CA's ceremony CRL).

        Raises:
            EngineError: POLICY (no certificate; ``ca.offline`` outside a ceremony).
        """
        async with self._store.leader(f"crl:{ca.id}") as leader:
            if not leader:
                return None
            return await self._regenerate_as_leader(
                ca, actor=actor, source=source, validity=validity
            )

    async def _regenerate_as_leader(
        self, ca: CA, *, actor: str, validity: timedelta | None, source: str = ""
    ) -> CrlRecord:
        started = self._clock.now()
        issuer = await self._engine.status_issuer(ca)
        this_update = started.replace(microsecond=0)
        known = self._entries.get(ca.id)
        if known is None or known.newest is None:
            known = _Entries()
            news = await self._store.list_revocations(ca.id)
        else:
            # Revocations are never undone: read only those since the last run
            # (with an overlap for late commits and other nodes' clocks).
            news = await self._store.list_revocations(
                ca.id, since=datetime.fromtimestamp(known.newest - _ENTRY_OVERLAP_S, UTC)
            )
        await asyncio.to_thread(known.add, news, default_time=this_update)
        self._entries[ca.id] = known
        number = await self._repo.next_crl_number(ca.id)
        next_update = this_update + (validity or self.settings.validity)
        der = await asyncio.to_thread(
            crl_codec.sign,
            issuer,
            known.encoded,
            number=number,
            this_update=this_update,
            next_update=next_update,
            distribution_point=self._engine.crl_scope(ca),
        )
        entries = known.encoded
        record = CrlRecord(
            ca_id=ca.id,
            number=number,
            this_update=this_update,
            next_update=next_update,
            der=der,
        )
        # The CRL and its record commit together: no published CRL goes unaudited.
        await self._repo.add_crl(
            record,
            audit=AuditEvent(
                at=started,
                actor=actor,
                action="crl.generate",
                target=ca.name,
                detail={"number": str(number), "entries": str(len(entries))},
                source=source,
            ),
        )
        await self._store.clear_crl_dirty(ca.id, up_to=started)
        self._latest[ca.id] = (time.monotonic(), record)
        log.info("CRL %d of CA %s: %d entries", number, ca.name, len(entries))
        return record

    async def latest(self, ca_id: str) -> CrlRecord:
        """Return the newest CRL of a CA, generating one if none is current.

        While storage is unreachable the last CRL this process served is served on
        (it is public and signed) until its nextUpdate.

        Raises:
            EngineError: NOT_FOUND (unknown CA, pending, or revoked and expired),
                UNAVAILABLE (another node is generating the first CRL, or storage
                is unreachable and no current CRL is in memory).
        """
        cached = self._latest.get(CAId(ca_id))
        now_mono = time.monotonic()
        if cached is not None and now_mono - cached[0] < _CACHE_SECONDS:
            return cached[1]
        try:
            return await self._load_latest(ca_id, cached, now_mono)
        except StorageUnavailableError:
            if cached is not None and cached[1].next_update > self._clock.now():
                return cached[1]
            raise

    async def _load_latest(
        self, ca_id: str, cached: tuple[float, CrlRecord] | None, now_mono: float
    ) -> CrlRecord:
        ca = await self._engine.get_ca(ca_id)
        # Disabled and revoked CAs keep publishing (``lifecycle.publishes_status``).
        if ca.id != ca_id or not lifecycle.publishes_status(ca, self._clock.now()):
            raise EngineError(ProblemKind.NOT_FOUND, f"no CRL for {ca_id!r}")
        info = await self._store.latest_crl_info(ca.id)
        if (
            cached is not None
            and info is not None
            and info[0] == cached[1].number
            and cached[1].next_update > self._clock.now()
        ):
            # Unchanged (another node may have made a newer one): skip reloading the DER.
            self._latest[ca.id] = (now_mono, cached[1])
            return cached[1]
        record = await self._repo.latest_crl(ca.id)
        if record is None or record.next_update <= self._clock.now():
            if ca.offline:
                # Only a ceremony signs it (``status/offline.py``); serve never loads the key.
                raise EngineError(
                    ProblemKind.UNAVAILABLE,
                    f"no current CRL of offline CA {ca.name}: run `privca ca sign-offline`",
                )
            record = await self.regenerate(ca) or await self._wait_for_other(ca.id, record)
        if record is None:
            raise EngineError(ProblemKind.UNAVAILABLE, "the CRL is being generated", retry_after=2)
        self._latest[ca.id] = (now_mono, record)
        return record

    async def _wait_for_other(self, ca_id: CAId, stale: CrlRecord | None) -> CrlRecord | None:
        """Another holder of the CA's CRL lock is making one: wait a little for it.

        Returns the newer CRL, or after ``_WAIT_FOR_OTHER_S`` the newest there is (None
        when there is none yet: the caller answers "being generated" with Retry-After).
        """
        stale_number = stale.number if stale is not None else None
        for _ in range(int(_WAIT_FOR_OTHER_S / _WAIT_STEP_S)):
            record = await self._repo.latest_crl(ca_id)
            if record is not None and record.number != stale_number:
                return record
            await asyncio.sleep(_WAIT_STEP_S)
        return await self._repo.latest_crl(ca_id)

    async def tick(self) -> list[CAId]:
        """Regenerate dirty CRLs past the debounce and CRLs due by schedule."""
        now = self._clock.now()
        done: list[CAId] = []
        # An offline CA's CRL comes from its ceremony only (``status/offline.py``).
        cas = [
            ca
            for ca in await self._engine.list_cas()
            if not ca.offline and lifecycle.publishes_status(ca, now)
        ]
        # The newest CRL of each CA is read before the dirty marks, and checked again
        # under the leader lock: if it moved, another node regenerated after this tick
        # looked (clearing the marks it covered; a later mark stays for the next tick),
        # and regenerating again would make a second CRL for one revocation.
        seen = {ca.id: await self._store.latest_crl_info(ca.id) for ca in cas}
        dirty = dict(await self._store.dirty_crls())
        for ca in cas:
            info = seen[ca.id]
            marked = dirty.get(ca.id)
            if marked is not None:
                due = now - marked >= self.settings.debounce
            else:
                renew_fraction = self.settings.validity * self.settings.renew_fraction
                due = info is None or info[1] + renew_fraction <= now
            if due:
                try:
                    if await self._regenerate_unless_replaced(ca, info) is not None:
                        done.append(ca.id)
                except StorageUnavailableError:
                    raise  # the loop reports an outage once, not once per CA
                except EngineError as exc:
                    log.warning("CRL of CA %s not regenerated: %s", ca.name, exc.detail)
        return done

    async def _regenerate_unless_replaced(
        self, ca: CA, seen: tuple[int, datetime] | None
    ) -> CrlRecord | None:
        """Regenerate as ``tick`` decided unless the newest CRL is no longer ``seen``."""
        async with self._store.leader(f"crl:{ca.id}") as leader:
            if not leader:
                return None
            latest = await self._store.latest_crl_info(ca.id)
            if (latest[0] if latest else None) != (seen[0] if seen else None):
                return None
            return await self._regenerate_as_leader(ca, actor="system:crl", validity=None)

    async def revoked(self, ca_id: CAId) -> None:
        """Mark a CA's CRL dirty after a revocation and wake the scheduler."""
        await self._store.mark_crl_dirty(ca_id, self._clock.now())
        self.wake.set()
