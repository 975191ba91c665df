"""Replay nonces (RFC 8555 §6.5): stateless to issue, single use across every node.

A nonce is ``base64url(issued_at || random || MAC)`` under an installation-wide
key kept in the database, so any node can check a nonce another node issued.
Using one inserts it into the used-nonce table (primary key): a second use on
any node fails. Issuing costs no database round trip; consuming costs one.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import datetime, timedelta
from typing import Final

from server.ca.acme.ports import AcmeRepository
from server.ca.errors import EngineError, ProblemKind
from server.ca.ports import Clock

__all__ = ["NonceService"]

_TS: Final = struct.Struct(">Q")
_RANDOM_BYTES: Final = 8
_MAC_BYTES: Final = 16
_RAW_LEN: Final = _TS.size + _RANDOM_BYTES + _MAC_BYTES
_PURGE_EVERY: Final = timedelta(minutes=10)


class NonceService:
    """Issue and consume replay nonces."""

    def __init__(self, repo: AcmeRepository, clock: Clock, *, lifetime: timedelta) -> None:
        self._repo = repo
        self._clock = clock
        self._lifetime = lifetime
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()
        self._last_purge: datetime | None = None
        self._pending: list[tuple[str, datetime, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def _mac_key(self) -> bytes:
        if self._key is None:
            async with self._key_lock:
                if self._key is None:
                    self._key = await self._repo.nonce_secret(secrets.token_bytes(32))
        return self._key

    def _mac(self, key: bytes, body: bytes) -> bytes:
        return hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    async def issue(self) -> str:
        """Return a fresh nonce."""
        key = await self._mac_key()
        millis = int(self._clock.now().timestamp() * 1000)
        body = _TS.pack(millis) + secrets.token_bytes(_RANDOM_BYTES)
        raw = body + self._mac(key, body)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    async def consume(self, nonce: str) -> None:
        """Accept a nonce once.

        Raises:
            EngineError: BAD_NONCE when it is malformed, forged, expired or used.
        """
        key = await self._mac_key()
        raw = _decode(nonce)
        if raw is None or len(raw) != _RAW_LEN:
            raise EngineError(ProblemKind.BAD_NONCE, "the nonce is malformed")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(key, body)):
            raise EngineError(ProblemKind.BAD_NONCE, "the nonce was not issued by this server")
        (millis,) = _TS.unpack(body[: _TS.size])
        now = self._clock.now()
        issued = datetime.fromtimestamp(millis / 1000, tz=now.tzinfo)
        expires = issued + self._lifetime
        if expires <= now or issued > now + timedelta(minutes=5):
            raise EngineError(ProblemKind.BAD_NONCE, "the nonce has expired")
        if not await self._record(nonce, expires):
            raise EngineError(ProblemKind.BAD_NONCE, "the nonce has already been used")
        if self._last_purge is None or now - self._last_purge > _PURGE_EVERY:
            self._last_purge = now
            await self._repo.purge_nonces(before=now)

    async def _record(self, nonce: str, expires: datetime) -> bool:
        """Queue a nonce for the next batched insert and wait for its verdict.

        Concurrent requests share one multi-row INSERT ... ON CONFLICT DO NOTHING
        RETURNING: no added delay (a batch leaves as soon as the previous one is
        back), far fewer statements under load.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((nonce, expires, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                waiters: dict[str, asyncio.Future[bool]] = {}
                rows: list[tuple[str, datetime]] = []
                for nonce, expires, future in batch:
                    if nonce in waiters:
                        # The same nonce twice in one batch: at most one use wins.
                        if not future.done():
                            future.set_result(False)
                        continue
                    waiters[nonce] = future
                    rows.append((nonce, expires))
                try:
                    fresh = await self._repo.consume_nonces(rows)
                except Exception as exc:  # noqa: BLE001 - task supervisor: every waiter gets it
                    for future in waiters.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for nonce, future in waiters.items():
                    if not future.done():
                        future.set_result(nonce in fresh)
        finally:
            self._flusher = None


def _decode(value: str) -> bytes | None:
    if not value or len(value) > 64 or not value.isascii():
        return None
    if any(c not in _B64URL for c in value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


_B64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
