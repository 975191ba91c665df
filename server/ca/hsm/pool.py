"""Token sessions: one login, a small pool of sessions, and recovery when the token comes back.

python-pkcs11 sessions are not thread-safe, so each ``Lease`` belongs to one thread
at a time; several sessions let signings from several threads overlap instead of
queueing on one. Any PKCS#11 error drops the whole pool (a removed token leaves
every session dead) and the call is retried once on fresh sessions; connecting
again re-initialises the module so a token that was absent is found when it
returns. Failures reach callers as ``EngineError(UNAVAILABLE)`` with a
``Retry-After`` and a log line, never as a crash. The PIN comes from a callable
(wiring reads the file or environment) and is never logged; a PIN the token
refused is not tried again until it changes, so a wrong PIN cannot lock the token.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar, cast

import pkcs11
from pkcs11 import _pkcs11
from pkcs11 import exceptions as p11
from pkcs11.types import SignMixin

from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "Lease",
    "PinSource",
    "SessionPool",
    "TokenSettings",
    "reinitialize",
    "unavailable",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
PinSource = Callable[[], str]

RETRY_AFTER_SECONDS: Final = 10
_WAIT_SLICE: Final = 0.2
# python-pkcs11 keeps one initialised module per path and process, shared by every pool
# over it: re-initialising invalidates all their sessions, so it happens once per failure.
# python-pkcs11 initialises modules with C_Initialize(NULL): no OS locking is
# promised, so concurrent calls into a module can crash it (SoftHSM2 does).
# Every call into a module is made under this lock; the pool still spares
# each request the open/login round trips.
_LIB_LOCK: Final = threading.RLock()
_LIB_GENERATION: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Which token to use and how many sessions to hold."""

    module: str
    token_label: str
    pool_size: int = 4
    # After a failed connect, further requests fail fast for this long before trying again.
    retry_seconds: float = 1.0
    # A request waits this long for a free session before giving up.
    acquire_seconds: float = 30.0


def unavailable(detail: str) -> EngineError:
    """Return the error a caller gets while the token cannot sign (protocols: "try later")."""
    return EngineError(ProblemKind.UNAVAILABLE, detail, retry_after=RETRY_AFTER_SECONDS)


class Lease:
    """One token session, used by one thread at a time, with the private keys it found."""

    __slots__ = ("generation", "lib_generation", "private_keys", "session")

    def __init__(self, session: pkcs11.Session, *, generation: int, lib_generation: int) -> None:
        self.session = session
        self.generation = generation
        self.lib_generation = lib_generation
        self.private_keys: dict[str, SignMixin] = {}

    def private_key(self, ref: str) -> SignMixin:
        """Return the token's private key whose CKA_ID is ``ref`` (cached per session)."""
        key = self.private_keys.get(ref)
        if key is None:
            found = self.session.get_key(
                object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=ref.encode()
            )
            key = cast(SignMixin, found)  # a private key object signs
            self.private_keys[ref] = key
        return key


class SessionPool:
    """Logged-in sessions on one token, handed out one thread at a time."""

    def __init__(
        self,
        settings: TokenSettings,
        pin: PinSource,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.pool_size < 1:
            raise ValueError("the PKCS#11 session pool needs at least one session")
        self.settings = settings
        self._pin = pin
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[Lease] = queue.LifoQueue()
        self._open = False
        self._generation = 0
        self._lib_generation = -1
        self._rescan = False
        self._refused_pin: bytes | None = None
        self._failed_at: float | None = None
        self._failure = ""

    @property
    def label(self) -> str:
        """Return the token label (for messages)."""
        return self.settings.token_label

    def run(self, what: str, action: Callable[[Lease], T]) -> T:
        """Run ``action`` on a leased session; retry once on fresh sessions after a token error.

        Raises:
            EngineError: UNAVAILABLE when the token is absent, refuses the PIN or keeps
                failing; errors ``action`` raises itself pass through.
        """
        failure: p11.PKCS11Error | None = None
        for _ in range(2):
            lease = self._acquire()
            try:
                with _LIB_LOCK:
                    result = action(lease)
            except p11.PKCS11Error as exc:
                self._drop(lease)
                failure = exc
                continue
            except BaseException:
                self._release(lease)
                raise
            self._release(lease)
            return result
        reason = _describe(failure)
        log.error("PKCS#11 token %r: %s failed: %s", self.label, what, reason)
        raise unavailable(f"the PKCS#11 token {self.label!r} could not {what}: {reason}")

    def close(self) -> None:
        """Close every idle session; leased ones are closed when they come back."""
        with self._lock:
            self._generation += 1
            self._open = False
            self._close_idle()

    # ------------------------------------------------------------------ internals

    def _acquire(self) -> Lease:
        deadline = self._monotonic() + self.settings.acquire_seconds
        while True:
            with self._lock:
                if not self._open:
                    self._connect()
                generation = self._generation
            try:
                lease = self._idle.get(timeout=_WAIT_SLICE)
            except queue.Empty:
                if self._monotonic() >= deadline:
                    log.error("PKCS#11 token %r: no free session", self.label)
                    raise unavailable(
                        f"all {self.settings.pool_size} sessions on PKCS#11 token "
                        f"{self.label!r} are busy"
                    ) from None
                continue
            if lease.generation == generation:
                return lease
            self._close(lease)

    def _release(self, lease: Lease) -> None:
        with self._lock:
            current = lease.generation == self._generation
        if current:
            self._idle.put(lease)
        else:
            self._close(lease)

    def _drop(self, lease: Lease) -> None:
        """Forget every session of the lease's generation (the token failed under it)."""
        with self._lock:
            if lease.generation == self._generation:
                self._generation += 1
                self._open = False
                self._rescan = True
                self._close_idle()
        self._close(lease)

    def _close_idle(self) -> None:
        while True:
            try:
                lease = self._idle.get_nowait()
            except queue.Empty:
                return
            self._close(lease)

    def _close(self, lease: Lease) -> None:
        # After a re-initialisation the old handle numbers may belong to new sessions.
        with _LIB_LOCK:
            if _LIB_GENERATION.get(self.settings.module, 0) != lease.lib_generation:
                return
            try:
                lease.session.close()
            except p11.PKCS11Error:
                log.debug("PKCS#11 token %r: closing a dead session failed", self.label)

    def _connect(self) -> None:
        """Open ``pool_size`` sessions, the first one logging in (held: ``self._lock``)."""
        now = self._monotonic()
        if self._failed_at is not None and now - self._failed_at < self.settings.retry_seconds:
            raise unavailable(self._failure)
        try:
            with _LIB_LOCK:
                self._open_sessions()
        except EngineError as exc:
            self._failed_at = now
            self._failure = exc.detail
            self._rescan = True
            log.error("PKCS#11 token %r: %s", self.label, exc.detail)
            raise
        self._failed_at = None
        self._open = True
        log.info("PKCS#11 token %r: %d sessions open", self.label, self.settings.pool_size)

    def _open_sessions(self) -> None:
        try:
            pin = self._pin()
        except (OSError, ValueError) as exc:
            raise unavailable(f"no PIN for PKCS#11 token {self.label!r}: {exc}") from exc
        digest = hashlib.sha256(pin.encode()).digest()
        if digest == self._refused_pin:
            raise unavailable(
                f"PKCS#11 token {self.label!r} refused the configured PIN; it is not retried "
                "until the PIN changes (so the token does not lock)"
            )
        try:
            lib, lib_generation = self._lib()
            token = lib.get_token(token_label=self.label)
            try:
                first = token.open(rw=True, user_pin=pin)
            except p11.UserAlreadyLoggedIn:
                # Another pool in this process, over the same module, logged in already.
                first = token.open(rw=True)
            sessions = [first] + [token.open(rw=True) for _ in range(self.settings.pool_size - 1)]
        except p11.PinIncorrect as exc:
            self._refused_pin = digest
            raise unavailable(f"PKCS#11 token {self.label!r} refused the PIN") from exc
        except p11.PinLocked as exc:
            raise unavailable(f"PKCS#11 token {self.label!r} has its user PIN locked") from exc
        except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
            raise unavailable(
                f"no single PKCS#11 token labelled {self.label!r} in {self.settings.module}"
            ) from exc
        except (p11.PKCS11Error, RuntimeError, OSError) as exc:
            raise unavailable(f"PKCS#11 token {self.label!r}: {_describe(exc)}") from exc
        self._generation += 1
        for session in sessions:
            self._idle.put(
                Lease(session, generation=self._generation, lib_generation=lib_generation)
            )

    def _lib(self) -> tuple[_pkcs11.lib, int]:
        """Return the loaded module, re-initialised if the last sessions on it failed."""
        module = self.settings.module
        with _LIB_LOCK:
            lib = pkcs11.lib(module)
            current = _LIB_GENERATION.setdefault(module, 0)
            if self._rescan and self._lib_generation == current:
                # C_Finalize + C_Initialize: find tokens inserted since, drop stale logins.
                lib.reinitialize()
                current += 1
                _LIB_GENERATION[module] = current
            self._rescan = False
            self._lib_generation = current
            return lib, current


def reinitialize(module: str) -> None:
    """Re-initialise a loaded module (C_Finalize + C_Initialize): every pool reconnects.

    For operators' tools and tests that need a fresh view of the slots and logins.
    """
    with _LIB_LOCK:
        pkcs11.lib(module).reinitialize()
        _LIB_GENERATION[module] = _LIB_GENERATION.get(module, 0) + 1


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name} ({text})" if text and len(text) < 200 else name
