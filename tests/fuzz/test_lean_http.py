"""Raw bytes on the lean OCSP protocol's socket: no 5xx, no internalError, no hang.

Requests are assembled from damaged parts (request line, header lines with CRLF, bare LF
or bare CR endings, Content-Length that lies, bodies, pipelining) and written to a real
listener. After the client half-closes, the server must answer what it can and close
within the case deadline; every status line it writes must be below 500.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Final

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ocsp import lean, messages
from tests.fuzz import strategies
from tests.fuzz.conftest import Stack

_INTERNAL_ERROR: Final = messages.unsuccessful_body(messages.INTERNAL_ERROR)
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
_GET: Final = b"/ocsp/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBT" + b"A" * 40
_ANSWER_WITHIN: Final = 3.0


@pytest.fixture
async def lean_port(stack: Stack) -> AsyncIterator[int]:
    """The stack's HTTP app behind a lean OCSP listener on a loopback port."""
    from server.app import create_http_app

    status = stack.services.status
    assert status is not None
    runner = web.AppRunner(create_http_app(stack.services, maintenance=False), access_log=None)
    await runner.setup()
    site = lean.LeanSite(runner, status, max_request_bytes=8192)
    await site.start("127.0.0.1", 0)
    try:
        yield site.port
    finally:
        await site.stop()
        await runner.cleanup()


_EOL: Final = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b""])
_HEADERS: Final = st.lists(
    st.sampled_from(
        [
            b"Host: 127.0.0.1",
            b"Content-Type: application/ocsp-request",
            b"Content-Type: text/plain",
            b"Connection: close",
            b"Connection: keep-alive",
            b"Transfer-Encoding: chunked",
            b"Expect: 100-continue",
            b"Content-Encoding: gzip",
            b"Content-Encoding: br",
            b"Content-Encoding: deflate",
            b" Folded: header",
            b"NoColon",
            b": empty-name",
            b"If-None-Match: x",
            b"X-Huge: " + b"a" * 9000,
        ]
    )
    | st.sampled_from([b"Content-Length: ", b"content-length:"]).flatmap(
        lambda name: st.sampled_from([b"0", b"5", b"-1", b"99999999999", b"abc", b"3 3", b""]).map(
            lambda v: name + v
        )
    )
    | st.binary(max_size=40),
    max_size=6,
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Draw one damaged HTTP request."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"get", b"G\x00T", b""]))
    target = draw(
        st.sampled_from(
            [b"/ocsp", b"/ocsp/", _GET, _GET + b"?x=1", b"/crl", b"*", b"/ocsp/%%%", b""]
        )
        | st.binary(max_size=30)
    )
    version = draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 ", b"http/1.1", b""])
    )
    eol = draw(_EOL)
    head = method + b" " + target + b" " + version + eol + b"".join(h + eol for h in draw(_HEADERS))
    head += draw(_EOL)
    body = draw(st.binary(max_size=64) | st.sampled_from([b"", b"0\x03\n\x01\x01", b"0" * 10]))
    return head + body


_STREAMS: Final = st.one_of(
    st.lists(requests(), min_size=1, max_size=3).map(b"".join),
    st.binary(max_size=512),
    requests().flatmap(lambda r: strategies.mutated(r, max_ops=3)),
)


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        return await reader.read()  # until the server closes
    finally:
        writer.close()
        await writer.wait_closed()


@settings(max_examples=strategies.examples(3))
@given(data=_STREAMS)
async def test_lean_raw_bytes_answer_below_500_and_close(lean_port: int, data: bytes) -> None:
    strategies.count("test_lean_raw_bytes_answer_below_500_and_close")
    try:
        out = await strategies.within_deadline(_exchange(lean_port, data))
    except (ConnectionResetError, BrokenPipeError):
        return  # the server hung up on garbage: an answer, not a crash
    statuses = [int(m) for m in _STATUS_LINE.findall(out)]
    assert all(s < 500 for s in statuses), (statuses, data, out[:300])
    assert _INTERNAL_ERROR not in out or not statuses, (data, out[:300])


@settings(max_examples=strategies.examples(1))
@given(
    eol=st.sampled_from([b"\n", b"\r\n"]),
    target=st.sampled_from([_GET, b"/ocsp/%%%", b"/crl", b"/ocsp"]),
    method=st.sampled_from([b"GET", b"POST"]),
)
async def test_lean_answers_complete_requests_without_eof(
    lean_port: int, eol: bytes, target: bytes, method: bytes
) -> None:
    """A complete request is answered while the connection stays open (bare LF included)."""
    strategies.count("test_lean_answers_complete_requests_without_eof")
    body = b"" if method == b"GET" else b"0\x03\n\x01\x01"
    head = [method + b" " + target + b" HTTP/1.1", b"Host: x", b"Content-Length: %d" % len(body)]
    if method == b"POST":
        head.append(b"Content-Type: application/ocsp-request")
    request = eol.join(head) + eol + eol + body
    reader, writer = await asyncio.open_connection("127.0.0.1", lean_port)
    try:
        writer.write(request)
        async with asyncio.timeout(_ANSWER_WITHIN):
            line = await reader.readline()
    except TimeoutError as exc:
        raise AssertionError(f"no answer within {_ANSWER_WITHIN} s to {request!r}") from exc
    finally:
        writer.close()
        await writer.wait_closed()
    assert _STATUS_LINE.match(line), (request, line)
