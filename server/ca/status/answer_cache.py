"""The OCSP responder's in-memory answers: keyed by CertID, bounded in bytes and entries.

An answer is keyed by what determines it: the requested CertIDs' DER (hash
algorithm, issuer name and key hashes, serial) plus the nonce when it is
echoed, never by the request body, whose padding (requestorName, extensions,
signatures) a client chooses freely. Short request bodies without a nonce are
remembered as aliases of their key, so the hot path answers repeat requests
without parsing them; aliases have their own quarter of the byte budget and
padded bodies are never aliased. Eviction is first in, first out. Must not
import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from server.ca.types import CAId

__all__ = ["ALIAS_MAX_BODY", "AnswerCache"]

T = TypeVar("T")

# Per entry beyond key and DER: the entry and answer objects, their header strings
# (Last-Modified, Expires, ETag), dict slots and the per-certificate index (measured
# with tracemalloc at ~520 bytes; rounded up).
_ENTRY_OVERHEAD: Final = 640
_ALIAS_OVERHEAD: Final = 160
# A canonical single-CertID request is 60 to 200 bytes (SHA-1 to SHA-512 CertIDs).
ALIAS_MAX_BODY: Final = 256

Cert = tuple[CAId, int]


@dataclass(slots=True)
class _Entry(Generic[T]):
    answer: T
    fresh_until: float
    size: int
    certs: tuple[Cert, ...]


class AnswerCache(Generic[T]):
    """Answers by canonical key, at most ``max_bytes`` (accounted) and ``max_entries``."""

    def __init__(self, *, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry[T]] = {}
        self._by_cert: dict[Cert, list[bytes]] = {}
        self._aliases: dict[bytes, bytes] = {}
        self._bytes = 0
        self._alias_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Return the accounted size of every entry and alias."""
        return self._bytes + self._alias_bytes

    def key_of(self, body: bytes) -> bytes | None:
        """Return the key a request body was seen with (short bodies only)."""
        return self._aliases.get(body)

    def get(self, key: bytes, now: float) -> T | None:
        """Return the answer under ``key`` if still fresh at ``now`` (epoch seconds)."""
        entry = self._entries.get(key)
        if entry is not None and entry.fresh_until > now:
            return entry.answer
        return None

    def put(
        self,
        key: bytes,
        answer: T,
        *,
        der_size: int,
        fresh_until: float,
        certs: tuple[Cert, ...],
        body: bytes | None = None,
    ) -> None:
        """Keep ``answer`` under ``key`` (and ``body`` as its alias), evicting the oldest."""
        size = len(key) + der_size + _ENTRY_OVERHEAD
        if self.max_entries <= 0 or size > self.max_bytes * 3 // 4:
            return
        self._drop(key)
        budget = self.max_bytes - self.max_bytes // 4  # the rest is the aliases'
        while self._entries and (
            len(self._entries) >= self.max_entries or self._bytes + size > budget
        ):
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(answer, fresh_until, size, certs)
        self._bytes += size
        for cert in certs:
            self._by_cert.setdefault(cert, []).append(key)
        if body is not None:
            self.add_alias(body, key)

    def add_alias(self, body: bytes, key: bytes) -> None:
        """Remember a short request body as another name for ``key``."""
        if len(body) > ALIAS_MAX_BODY or body in self._aliases:
            return
        size = len(body) + len(key) + _ALIAS_OVERHEAD
        budget = self.max_bytes // 4
        while self._aliases and self._alias_bytes + size > budget:
            old = next(iter(self._aliases))
            self._alias_bytes -= len(old) + len(self._aliases.pop(old)) + _ALIAS_OVERHEAD
        if self._alias_bytes + size <= budget:
            self._aliases[body] = key
            self._alias_bytes += size

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.size
        for cert in entry.certs:
            keys = self._by_cert.get(cert)
            if keys is not None:
                keys[:] = [k for k in keys if k != key]
                if not keys:
                    del self._by_cert[cert]

    def invalidate(self, certs: Iterable[Cert]) -> int:
        """Drop the answers naming these certificates; return how many had answers.

        Aliases stay: they name a key, and a key without an answer is a miss.
        """
        dropped = 0
        for cert in certs:
            keys = self._by_cert.pop(cert, None)
            if keys:
                dropped += 1
                for key in keys:
                    entry = self._entries.pop(key, None)
                    if entry is not None:
                        self._bytes -= entry.size
                        for other in entry.certs:
                            if other != cert:
                                rest = self._by_cert.get(other)
                                if rest is not None:
                                    rest[:] = [k for k in rest if k != key]
                                    if not rest:
                                        del self._by_cert[other]
        return dropped
