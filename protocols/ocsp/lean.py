"""Lean HTTP/1.1 on the OCSP port: answers OCSP itself, hands anything else to aiohttp.

# Divergence: STYLE routes every request through aiohttp and its error
# middleware. An OCSP answer is a dictionary lookup; aiohttp's per-request
# machinery (request and response objects, header multidicts, a task per
# request) is several times its cost, and at tens of thousands of answers per
# second that difference is the throughput (README, bench/ocsp.py). So this
# protocol parses just what OCSP needs and answers ``POST /ocsp`` and
# ``GET /ocsp/{base64}`` itself: cache hits at once, misses with one awaited
# call to the status service, engine errors as the OCSP middleware renders
# them (``messages.unsuccessful``). At the first request it does not fully
# understand (another path or method, a query, chunked bodies, Expect,
# Content-Encoding, Upgrade, a body over the limit, odd framing such as
# bare-LF line ends) it hands the connection, with every byte not yet
# answered, to aiohttp's own protocol for good; CRLs,
# caIssuers and every HTTP-level error keep coming from the application.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Final, cast

from aiohttp import web

from protocols.common import guard
from protocols.ocsp import links, messages
from server.ca.errors import EngineError
from server.ca.status import api as status_api

__all__ = ["LeanContext", "LeanHttp", "LeanSite"]

log = logging.getLogger("protocols.ocsp.routes")

_MAX_HEAD: Final = 8192
# Decoded GET paths kept: real RFC 5019 paths are ~100 characters; longer ones are
# decoded each time, so unique garbage cannot grow the map past ~3 MB.
_MAX_DECODED: Final = 10_000
_MAX_DECODED_TAIL: Final = 256
_POST_PATHS: Final = frozenset({links.PREFIX.encode(), links.PREFIX.encode() + b"/"})
_GET_PREFIX: Final = links.PREFIX.encode() + b"/"
_REQUEST_TYPE: Final = messages.REQUEST_TYPE.encode()
_SUCCESSFUL: Final = 0
_HANDED_OFF: Final = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"})


class LeanContext:
    """What every lean connection of one listener shares."""

    def __init__(
        self,
        service: status_api.StatusService,
        fallback: Callable[[], asyncio.Protocol],
        *,
        max_request_bytes: int,
        keepalive_timeout: float = 75.0,
    ) -> None:
        self.service = service
        self.fallback = fallback
        self.max_request_bytes = max_request_bytes
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[LeanHttp] = set()
        # Answers sent, by OCSPResponseStatus (0 successful; RFC 6960 §4.2.1): plain
        # counts the metrics copy every few seconds, so the hot path pays an increment.
        self.answers: dict[int, int] = {}
        # GET path tail -> decoded request: validators repeat the same URLs (RFC 5019).
        self.decoded: dict[bytes, bytes] = {}
        self._date_second = 0
        self._date = b""

    def date(self) -> bytes:
        """Return the Date header line, formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def close_all(self) -> None:
        """Close every lean connection (server shutdown)."""
        for conn in list(self.connections):
            conn.close()


def _response(
    ctx: LeanContext,
    status: bytes,
    headers: dict[str, str],
    body: bytes,
    *,
    keep_alive: bool,
    http10: bool,
) -> bytes:
    lines = [b"HTTP/1.1 ", status, b"\r\n", ctx.date(), b"Server: privca\r\n"]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif http10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


class LeanHttp(asyncio.Protocol):
    """One connection: OCSP requests answered here, the rest by aiohttp after a handoff."""

    def __init__(self, ctx: LeanContext) -> None:
        self._ctx = ctx
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a cache miss is being answered; later requests wait
        self._write_paused = False
        self._read_paused = False
        self._closing = False
        self._last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._ctx.connections.add(self)
        self._arm_timer(self._ctx.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._ctx.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._last = time.monotonic()
        if not self._busy and not self._write_paused:
            self._process()
        elif len(self._buf) > _MAX_HEAD + self._ctx.max_request_bytes:
            self._pause_reading()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()
        if not self._busy:
            self._process()

    def close(self) -> None:
        """Close the connection after what has been written."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        buf = self._buf
        ctx = self._ctx
        while buf and not self._busy and not self._closing and not self._write_paused:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                # A head ended by bare LFs (RFC 9112 §2.2 lets a recipient accept them) has
                # no CRLFCRLF to wait for: aiohttp decides, rather than the idle timeout.
                if len(buf) > _MAX_HEAD or b"\n\n" in buf or b"\n\r\n" in buf:
                    self._handoff()
                return
            head = bytes(buf[:end])
            crlfs = head.count(b"\r\n")
            if end > _MAX_HEAD or head.count(b"\n") != crlfs or head.count(b"\r") != crlfs:
                self._handoff()  # too long, or a bare LF or CR inside the head
                return
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
                self._handoff()
                return
            method, target, version = parts
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                key = name.lower()
                if not sep or not name or name != name.strip() or key in headers:
                    self._handoff()  # malformed or repeated: aiohttp decides
                    return
                headers[key] = value.strip()
            if not _HANDED_OFF.isdisjoint(headers):
                self._handoff()
                return
            http10 = version == b"HTTP/1.0"
            connection = headers.get(b"connection", b"").lower()
            keep_alive = connection == b"keep-alive" if http10 else connection != b"close"
            head_len = end + 4
            if method == b"POST" and target in _POST_PATHS:
                length_text = headers.get(b"content-length")
                if (
                    length_text is None
                    or not length_text.isdigit()
                    or not 0 < int(length_text) <= ctx.max_request_bytes
                    or headers.get(b"content-type") != _REQUEST_TYPE
                ):
                    self._handoff()
                    return
                total = head_len + int(length_text)
                if len(buf) < total:
                    return  # wait for the rest of the body
                der = bytes(buf[head_len:total])
                del buf[:total]
                self._answer(der, keep_alive=keep_alive, http10=http10, etag=None)
            elif (
                method == b"GET"
                and target.startswith(_GET_PREFIX)
                and b"?" not in target
                and headers.get(b"content-length", b"0") == b"0"
            ):
                del buf[:head_len]
                tail = target[len(_GET_PREFIX) :]
                etag = headers.get(b"if-none-match")
                request_der = ctx.decoded.get(tail)
                if request_der is None:
                    try:
                        request_der = messages.decode_get(
                            tail.decode("latin-1"), max_bytes=ctx.max_request_bytes
                        )
                    except EngineError as err:
                        self._send_error(err, keep_alive=keep_alive, http10=http10)
                        continue
                    if len(tail) <= _MAX_DECODED_TAIL:
                        if len(ctx.decoded) >= _MAX_DECODED:
                            ctx.decoded.clear()
                        ctx.decoded[tail] = request_der
                self._answer(request_der, keep_alive=keep_alive, http10=http10, etag=etag)
            else:
                self._handoff()
                return

    def _answer(self, der: bytes, *, keep_alive: bool, http10: bool, etag: bytes | None) -> None:
        answer = self._ctx.service.cached_ocsp(der)
        if answer is not None:
            self._send(answer, keep_alive=keep_alive, http10=http10, etag=etag)
            return
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(
            self._answer_miss(der, keep_alive=keep_alive, http10=http10, etag=etag)
        )

    async def _answer_miss(
        self, der: bytes, *, keep_alive: bool, http10: bool, etag: bytes | None
    ) -> None:
        try:
            answer = await self._ctx.service.ocsp(der)
        except EngineError as err:
            self._send_error(err, keep_alive=keep_alive, http10=http10)
        except Exception:
            log.exception("OCSP request failed")
            self._count(messages.INTERNAL_ERROR)
            self._write(
                messages.unsuccessful_body(messages.INTERNAL_ERROR),
                messages.error_headers(),
                keep_alive=keep_alive,
                http10=http10,
            )
        else:
            self._send(answer, keep_alive=keep_alive, http10=http10, etag=etag)
        self._busy = False
        self._task = None
        self._resume_reading()
        self._process()

    def _count(self, status: int) -> None:
        answers = self._ctx.answers
        answers[status] = answers.get(status, 0) + 1

    def _send(
        self,
        answer: status_api.OcspAnswer,
        *,
        keep_alive: bool,
        http10: bool,
        etag: bytes | None,
    ) -> None:
        self._count(_SUCCESSFUL)
        headers = messages.response_headers(answer)
        if answer.cacheable and etag is not None and etag.decode("latin-1") == answer.etag:
            headers.pop("Content-Type")
            self._write(
                b"", headers, keep_alive=keep_alive, http10=http10, status=b"304 Not Modified"
            )
            return
        self._write(answer.der, headers, keep_alive=keep_alive, http10=http10)

    def _send_error(self, err: EngineError, *, keep_alive: bool, http10: bool) -> None:
        status = messages.unsuccessful_status(err.kind)
        self._count(status)
        log.info("OCSP request -> status %d: %s", status, err.detail)
        self._write(
            messages.unsuccessful_body(status),
            messages.error_headers(),
            keep_alive=keep_alive,
            http10=http10,
        )

    def _write(
        self,
        body: bytes,
        headers: dict[str, str],
        *,
        keep_alive: bool,
        http10: bool,
        status: bytes = b"200 OK",
    ) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(
            _response(self._ctx, status, headers, body, keep_alive=keep_alive, http10=http10)
        )
        if not keep_alive:
            self.close()

    # ------------------------------------------------------------------ plumbing

    def _handoff(self) -> None:
        """Give the connection and every unanswered byte to aiohttp, for good."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._closing = True
        self._ctx.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        rest = bytes(self._buf)
        self._buf.clear()
        proto = self._ctx.fallback()
        guard.hand_over(transport, self, proto)
        proto.connection_made(transport)
        if self._read_paused:
            transport.resume_reading()
        if rest:
            proto.data_received(rest)

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self._closing:
            self._read_paused = False
            self._transport.resume_reading()

    def _arm_timer(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        if self._transport is None:
            return
        idle = time.monotonic() - self._last
        timeout = self._ctx.keepalive_timeout
        if idle >= timeout and not self._busy:
            log.debug("closing an idle OCSP connection")
            self.close()
            return
        self._arm_timer(max(timeout - idle, 1.0))


class LeanSite:
    """The OCSP port's listener: lean connections in front of a set-up aiohttp runner."""

    def __init__(
        self,
        runner: web.AppRunner,
        service: status_api.StatusService,
        *,
        max_request_bytes: int,
        keepalive_timeout: float = 75.0,
        limits: guard.Limits | None = None,
    ) -> None:
        server = runner.server
        if server is None:
            raise RuntimeError("set the runner up before starting the lean OCSP site")
        self._ctx = LeanContext(
            service,
            server,
            max_request_bytes=max_request_bytes,
            keepalive_timeout=keepalive_timeout,
        )
        # Slow-client deadlines and the connection cap stay across a handoff to aiohttp.
        self.listener = guard.Listener(limits or guard.Limits())

    async def start(self, host: str, port: int, *, reuse_port: bool | None = None) -> None:
        """Listen on host:port."""
        ctx = self._ctx
        await self.listener.start(lambda: LeanHttp(ctx), host, port, reuse_port=reuse_port)

    @property
    def answers(self) -> dict[int, int]:
        """Return the answers sent so far by OCSPResponseStatus (live; do not modify)."""
        return self._ctx.answers

    @property
    def port(self) -> int:
        """Return the bound port (useful after listening on port 0)."""
        return self.listener.port

    async def stop(self) -> None:
        """Stop listening and close the lean connections (handed-off ones close with aiohttp)."""
        self.listener.close()
        self._ctx.close_all()
