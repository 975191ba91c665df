"""Slow-client limits for the HTTP and HTTPS listeners: per-phase deadlines and a connection cap.

aiohttp has a keep-alive timeout but no deadline for reading a request: every
arriving byte keeps a request alive, so a client dribbling one header byte a
second (slowloris) holds a connection and its buffers for ever, and nothing
caps how many connections one listener holds. ``Guard`` sits between the
transport and the real protocol (aiohttp's ``RequestHandler`` or the lean OCSP
protocol), follows HTTP/1.1 message framing just far enough to know which
phase a request is in, and aborts the connection when its head is not
complete ``header_timeout`` seconds after its first byte (or after the
connection opened, for a client that never speaks), or its body is not
complete ``body_timeout`` seconds after the head. Arriving bytes never reset
either deadline. Between requests (keep-alive) the real protocol's own idle
timeout applies. A listener at ``max_connections`` answers 503 and closes.
Framing the guard cannot follow (odd chunk lines, giant heads) leaves the
deadline running, so the worst a confused guard does is cut a connection; the
real protocol still decides what each byte means.

On a TLS listener the loop would hand a connection to its protocol only after
the handshake, so connections still in their handshake would be neither
counted nor capped. A TLS ``Listener`` therefore accepts on its own sockets:
a connection is counted from ``accept()``, one past the cap is closed at once
(before any TLS work), and the loop's ``ssl_handshake_timeout`` (the head
deadline, which also covers the head after the handshake) drops an unfinished
handshake.

Must not import ``server``; pure asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

__all__ = ["Guard", "Limits", "Listener", "hand_over"]

log = logging.getLogger(__name__)

_IDLE: Final = 0
_HEAD: Final = 1
_BODY: Final = 2  # Content-Length body
_CHUNKED: Final = 3
_MAX_LINE: Final = 65536  # head or chunk line kept for framing; beyond: untracked
_BACKLOG: Final = 1024
_ACCEPT_BATCH: Final = 128  # connections accepted per readable event, as asyncio's own server
_ACCEPT_RETRY_SECONDS: Final = 1.0  # out of descriptors or memory: pause accepting
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadlines (seconds) per request phase and the connection cap of one listener."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096


class Listener:
    """One listening socket's guarded connections: shared limits, count and deadline sweep."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.connections: set[Guard] = set()
        self.refused = 0
        self.timed_out = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._tls: _TlsAccept | None = None
        # One sweep a second checks every deadline: cheaper than a timer per request.
        self._period = min(1.0, limits.header_timeout / 5, limits.body_timeout / 5)

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], Guard]:
        """Return a protocol factory putting a ``Guard`` in front of ``factory``'s protocols."""
        return lambda: Guard(self, factory)

    async def start(
        self,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        """Listen on host:port; with ``ssl_context``, count and cap from TCP accept."""
        if ssl_context is None:
            self._server = await asyncio.get_running_loop().create_server(
                self.wrap(factory), host, port, reuse_port=reuse_port, backlog=_BACKLOG
            )
            return
        sockets = await _bind(host, port, reuse_port=bool(reuse_port))
        self._tls = _TlsAccept(self, factory, ssl_context, sockets)

    @property
    def port(self) -> int:
        """Return the bound port (useful after listening on port 0)."""
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        if self._tls is not None:
            return int(self._tls.sockets[0].getsockname()[1])
        raise RuntimeError("the listener is not listening")

    def close(self) -> None:
        """Stop listening and sweeping; open connections close with their protocols.

        TLS handshakes still in progress are cancelled (their connections closed).
        """
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._tls is not None:
            self._tls.close()
            self._tls = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _add(self, conn: Guard) -> None:
        self.connections.add(conn)
        if self._sweeper is None:
            self._arm()

    # ------------------------------------------------------------------ count

    def _admit(self, conn: Guard) -> bool:
        if conn in self.connections:
            return True  # a TLS connection, admitted when accepted
        if len(self.connections) >= self.limits.max_connections:
            self._refuse()
            return False
        self._add(conn)
        return True

    def _refuse(self) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning(
                "connection cap (%d) reached: %d refused so far",
                self.limits.max_connections,
                self.refused,
            )

    def _arm(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(self._period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for conn in list(self.connections):
            conn.check(now)
        if self.connections:
            self._arm()


class _TlsAccept:
    """A TLS listener's own accept loop: count and cap at accept, then hand to the loop's TLS."""

    def __init__(
        self,
        listener: Listener,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext,
        sockets: list[socket.socket],
    ) -> None:
        self._listener = listener
        self._factory = factory
        self._ssl_context = ssl_context
        self.sockets = sockets
        self._loop = asyncio.get_running_loop()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._resume()

    def close(self) -> None:
        """Stop accepting, close the sockets and cancel the handshakes in progress."""
        self._pause()
        for sock in self.sockets:
            sock.close()
        for task in list(self._handshakes):
            task.cancel()  # the loop closes the connection

    def _resume(self) -> None:
        self._retry = None
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        listener = self._listener
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                # EMFILE, ENFILE, ENOBUFS, ENOMEM: the socket stays readable, so pause
                # instead of spinning, as asyncio's own server does.
                log.error(
                    "TLS listener: cannot accept (%s); pausing %.0f s", exc, _ACCEPT_RETRY_SECONDS
                )
                self._pause()
                self._retry = self._loop.call_later(_ACCEPT_RETRY_SECONDS, self._resume)
                return
            if len(listener.connections) >= listener.limits.max_connections:
                # No 503 without a handshake: refusing before any TLS work is the point.
                listener._refuse()
                conn.close()
                continue
            guard = Guard(listener, self._factory)
            listener._add(guard)  # counted from accept: handshakes in progress too
            task = self._loop.create_task(self._handshake(guard, conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, guard: Guard, sock: socket.socket) -> None:
        try:
            # The loop owns the socket from here and closes it if the handshake fails.
            await self._loop.connect_accepted_socket(
                lambda: guard,
                sock,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._listener.limits.header_timeout,
            )
        except OSError as exc:  # SSLError, ConnectionError, the handshake timeout
            log.debug("TLS handshake failed: %s", exc)
        finally:
            if not guard.is_open:  # never reached its protocol, or already ended
                self._listener.connections.discard(guard)


class Guard(asyncio.Protocol):
    """One connection: tracks request framing, enforces the listener's deadlines."""

    def __init__(self, listener: Listener, factory: Callable[[], asyncio.Protocol]) -> None:
        self._listener = listener
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # A fresh connection is in its head phase: a client that never speaks is cut too.
        self._phase = _HEAD
        self._since = self._loop.time()
        self._line = bytearray()  # the head (or chunk line) so far
        self._left = 0  # body octets still to come (Content-Length or chunk data + CRLF)
        self._trailers = False  # chunked: after the last chunk, reading trailer lines

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._listener._admit(self):
            self._transport.write(_BUSY)
            self._transport.close()
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connections.discard(self)
        self._transport = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        self._track(data)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # ------------------------------------------------------------------ deadlines

    @property
    def is_open(self) -> bool:
        """Return whether the connection reached its protocol and has not ended yet."""
        return self._transport is not None

    def replace(self, inner: asyncio.Protocol) -> None:
        """Put another protocol behind this guard (a handoff); the deadlines stay."""
        self._inner = inner

    def check(self, now: float) -> None:
        """Abort the connection if its current phase is past its deadline."""
        phase = self._phase
        if phase == _IDLE or self._transport is None:
            return
        limits = self._listener.limits
        limit = limits.header_timeout if phase == _HEAD else limits.body_timeout
        if now - self._since > limit:
            self._listener.timed_out += 1
            log.info(
                "closing a slow client: request %s not read within %.0f s",
                "head" if phase == _HEAD else "body",
                limit,
            )
            self._transport.abort()

    # ------------------------------------------------------------------ framing

    def _track(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            phase = self._phase
            if phase == _IDLE:
                # Stray CRLFs between requests (RFC 9112 §2.2) do not start a request.
                while pos < end and data[pos] in b"\r\n":
                    pos += 1
                if pos == end:
                    return
                self._phase = _HEAD
                self._since = self._loop.time()
                self._line.clear()
            elif phase == _HEAD:
                pos = self._track_head(data, pos)
            elif phase == _BODY:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    self._phase = _IDLE
            else:
                pos = self._track_chunks(data, pos)

    def _track_head(self, data: bytes, pos: int) -> int:
        line = self._line
        if not line:
            # The usual case: a whole head in one read, searched in place (no copy).
            stop = _head_end(data, pos)
            if stop > 0:
                return self._head_done(data[pos:stop], stop)
        scan = max(0, len(line) - 2)
        line += data[pos:]
        stop = _head_end(line, scan)
        if stop < 0:
            if len(line) > _MAX_LINE:
                line.clear()  # untracked: the deadline runs on, the real parser refuses it
            return len(data)
        consumed = len(data) - (len(line) - stop)
        head = bytes(line[:stop])
        line.clear()
        return self._head_done(head, consumed)

    def _head_done(self, head: bytes, consumed: int) -> int:
        length, chunked = _framing(head)
        if chunked:
            self._phase, self._left, self._trailers = _CHUNKED, 0, False
        elif length:
            self._phase, self._left = _BODY, length
        else:
            self._phase = _IDLE
            return consumed
        self._since = self._loop.time()
        return consumed

    def _track_chunks(self, data: bytes, pos: int) -> int:
        end = len(data)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += data[pos:]
                if len(self._line) > _MAX_LINE:
                    self._line.clear()
                return end
            self._line += data[pos:nl]
            pos = nl + 1
            text = bytes(self._line).strip()
            self._line.clear()
            if self._trailers:
                if not text:  # the empty line after the trailers ends the message
                    self._phase = _IDLE
                    return pos
                continue
            if not text:
                continue  # the CRLF after a chunk's data
            size = text.split(b";", 1)[0].strip()
            try:
                octets = int(size, 16)
            except ValueError:
                return end  # not framing we follow: the deadline runs on
            if octets:
                self._left = octets
            else:
                self._trailers = True
        return pos


async def _bind(host: str, port: int, *, reuse_port: bool) -> list[socket.socket]:
    """Return listening non-blocking sockets on every address of host:port."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            # SO_REUSEADDR always, IPV6_V6ONLY on IPv6, as loop.create_server.
            sock = socket.create_server(
                address, family=family, backlog=_BACKLOG, reuse_port=reuse_port
            )
            sockets.append(sock)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _head_end(data: bytes | bytearray, start: int) -> int:
    """Return where the head in ``data`` ends (after its empty line), -1 if not yet.

    Bare LF line ends count too (RFC 9112 §2.2), as the real parser may accept them.
    """
    crlf = data.find(b"\n\r\n", start)
    lf2 = data.find(b"\n\n", start, crlf if crlf >= 0 else len(data))
    if lf2 >= 0:
        return lf2 + 2
    return crlf + 3 if crlf >= 0 else -1


def _framing(head: bytes) -> tuple[int, bool]:
    """Return (Content-Length, chunked) of a request head (0, False when absent or odd)."""
    lower = head.lower()
    chunked = False
    te = lower.find(b"\ntransfer-encoding:")
    if te >= 0:
        chunked = b"chunked" in lower[te : lower.find(b"\n", te + 1)]
    length = 0
    cl = lower.find(b"\ncontent-length:")
    if cl >= 0:
        value = lower[cl + 16 : lower.find(b"\n", cl + 1)].strip()
        if value.isdigit():
            length = int(value)
    return length, chunked


def hand_over(transport: asyncio.Transport, old: asyncio.Protocol, new: asyncio.Protocol) -> None:
    """Make ``new`` the protocol reading ``transport`` instead of ``old``.

    Behind a ``Guard`` only the guard's inner protocol changes, so the
    deadlines and the connection count stay with the connection.
    """
    outer = transport.get_protocol()
    if isinstance(outer, Guard) and outer is not old:
        outer.replace(new)
    else:
        transport.set_protocol(new)
