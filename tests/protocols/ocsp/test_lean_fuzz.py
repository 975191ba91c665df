"""Random and mutated bytes into the lean OCSP protocol: an answer or a handoff, never a crash."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from protocols.ocsp import lean
from server.ca.errors import EngineError, ProblemKind
from server.ca.status.responder import OcspAnswer


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Fallback(asyncio.Protocol):
    """Stands for aiohttp's protocol: records what was handed over."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


class FakeService:
    def cached_ocsp(self, body: bytes) -> OcspAnswer | None:
        return OcspAnswer(der=b"\x30\x03\x0a\x01\x00", cacheable=False) if body == b"hit" else None

    async def ocsp(self, body: bytes) -> OcspAnswer:
        if body.startswith(b"\x30"):
            return OcspAnswer(der=b"\x30\x03\x0a\x01\x00", cacheable=False)
        raise EngineError(ProblemKind.MALFORMED, "not a request")


SEEDS = [
    b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
    b"Content-Length: 3\r\n\r\nhit",
    b"POST /ocsp HTTP/1.1\r\nContent-Type: application/ocsp-request\r\n"
    b"Content-Length: 4\r\n\r\n\x30\x02\x05\x00",
    b"GET /ocsp/MAMKAQE%3D HTTP/1.1\r\nHost: x\r\n\r\n",
    b'GET /ocsp/aGl0 HTTP/1.0\r\nIf-None-Match: "x"\r\n\r\n',
    b"GET /crl/issuing.crl HTTP/1.1\r\n\r\n",
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 2 and out:
            del out[pos : pos + rng.randint(1, 6)]
        else:
            out[pos:pos] = rng.choice([b"\r\n", b"\r\n\r\n", b":", b" ", b"Content-Length: 9"])
    return bytes(out)


async def test_mutated_requests_never_raise() -> None:
    rng = random.Random(20261127)  # noqa: S311 - deterministic test data
    handed = 0
    answered = 0
    for i in range(3000):
        seed = rng.choice(SEEDS)
        data = (
            _mutate(rng, seed * rng.randint(1, 3))
            if i % 10
            else bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        )
        fallbacks: list[Fallback] = []

        def fallback(made: list[Fallback] = fallbacks) -> asyncio.Protocol:
            made.append(Fallback())
            return made[-1]

        ctx = lean.LeanContext(FakeService(), fallback, max_request_bytes=64)  # type: ignore[arg-type]
        transport = FakeTransport()
        conn = lean.LeanHttp(ctx)
        conn.connection_made(transport)
        # Arbitrary split points, as TCP may deliver them.
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(3, len(data) + 1)))
        for start, stop in zip([0, *cuts], [*cuts, len(data)], strict=True):
            if transport.protocol is None:
                conn.data_received(data[start:stop])
            else:
                transport.protocol.data_received(data[start:stop])
        await asyncio.sleep(0)  # let misses finish
        await asyncio.sleep(0)
        if fallbacks:
            handed += 1
            # Nothing is lost: the fallback got the bytes no answer was written for.
            assert bytes(fallbacks[0].received) in data
        if transport.written:
            answered += 1
            assert transport.written.startswith(b"HTTP/1.1 ")
        conn.connection_lost(None)
    assert handed > 100
    assert answered > 100


async def test_only_short_get_paths_are_remembered() -> None:
    ctx = lean.LeanContext(FakeService(), Fallback, max_request_bytes=8192)  # type: ignore[arg-type]
    transport = FakeTransport()
    conn = lean.LeanHttp(ctx)
    conn.connection_made(transport)
    long_tail = b"QUFB" * 300  # valid base64 of garbage, 1,200 characters
    conn.data_received(b"GET /ocsp/" + long_tail + b" HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    assert transport.written.endswith(b"\x30\x03\x0a\x01\x01")  # malformedRequest
    assert ctx.decoded == {}
    conn.data_received(b"GET /ocsp/aGl0 HTTP/1.1\r\n\r\n")  # "hit"
    assert ctx.decoded == {b"aGl0": b"hit"}
    conn.connection_lost(None)
