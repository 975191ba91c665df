"""What every fuzz target shares: the profiles, case counters, per-case deadlines, mutations.

Mutations start from a valid message (a CSR, an OCSP request, a Matter TLV certificate)
and damage it the way a fuzzer does: flip bits, overwrite, insert and delete bytes,
truncate, duplicate a slice, and rewrite DER length octets. Random bytes alone rarely
get past the first tag; mutations reach the parser's inner fields.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterator, Sequence
from datetime import timedelta
from typing import Final, TypeVar

import aiohttp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "CASES",
    "CASE_TIMEOUT",
    "PROFILE",
    "SECONDS",
    "answer",
    "batch",
    "count",
    "examples",
    "mutate",
    "mutated",
    "within_deadline",
]

T = TypeVar("T")

# Examples per unit of weight: a few hundred per target in the normal run; `make fuzz`
# (PRIVCA_FUZZ=long) runs enough that all targets together pass 1,000,000 cases.
_PER_WEIGHT: Final = {"bounded": 100, "long": 2_000}
# Inputs per seed in the batch targets: plain-random mutations, far cheaper per case than
# hypothesis' own generation (~150 examples/s), so the long run reaches its million.
_BATCH: Final = {"bounded": 20, "long": 150}
PROFILE: Final = os.environ.get("PRIVCA_FUZZ", "bounded")
if PROFILE not in _PER_WEIGHT:
    raise RuntimeError(f"PRIVCA_FUZZ must be one of {sorted(_PER_WEIGHT)}, not {PROFILE!r}")
# A case that takes longer than this is a hang (async targets are cancelled at it).
CASE_TIMEOUT: Final = 10.0

settings.register_profile(
    "bounded",
    derandomize=True,  # the normal run is reproducible: same cases every time
    database=None,
    deadline=timedelta(seconds=CASE_TIMEOUT),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "long",
    database=None,
    deadline=timedelta(seconds=CASE_TIMEOUT),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(PROFILE)

CASES: Counter[str] = Counter()
SECONDS: defaultdict[str, float] = defaultdict(float)


def examples(weight: int) -> int:
    """Return max_examples for a target of this weight under the active profile."""
    return weight * _PER_WEIGHT[PROFILE]


def count(target: str) -> None:
    """Record one case of ``target`` (the test function's name)."""
    CASES[target] += 1


async def within_deadline(awaitable: Awaitable[T]) -> T:
    """Await one case; a case still running after CASE_TIMEOUT fails as a hang."""
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            return await awaitable
    except TimeoutError as exc:
        raise AssertionError(f"hang: no answer within {CASE_TIMEOUT} s") from exc


_LENGTH_OCTETS: Final = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0x89, 0xFF)


async def answer(call: Awaitable[aiohttp.ClientResponse]) -> tuple[int, bytes]:
    """Return (status, body) of one request, within the per-case deadline.

    A response aiohttp's client refuses to parse (say, a body after a HEAD answer) still
    carries the server's status; that status is what the invariants judge.
    """

    async def run() -> tuple[int, bytes]:
        try:
            resp = await call
            return resp.status, await resp.read()
        except aiohttp.ClientResponseError as exc:
            return exc.status, b""

    return await within_deadline(run())


def _der_lengths(data: bytes) -> list[int]:
    """Return offsets of plausible DER length octets (the byte after a tag)."""
    return [i + 1 for i in range(len(data) - 1) if data[i] in (0x02, 0x03, 0x04, 0x06, 0x30, 0x31)]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, *, max_ops: int = 4) -> bytes:
    """Draw ``seed`` damaged by one to ``max_ops`` mutations."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup", "len"]))
        n = len(data)
        if op == "truncate":
            del data[draw(st.integers(0, n)) :]
            continue
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, n - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF, i % 256]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "dup":
            j = draw(st.integers(i, min(n, i + 64)))
            data[i:i] = data[i:j]
        else:
            offsets = _der_lengths(bytes(data))
            if offsets:
                k = draw(st.sampled_from(offsets))
                data[k] = draw(st.sampled_from(_LENGTH_OCTETS))
    return bytes(data)


def mutate(rng: random.Random, seed: bytes, *, max_ops: int = 4) -> bytes:
    """Return ``seed`` damaged by one to ``max_ops`` mutations drawn from ``rng``."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, max_ops)):
        op = rng.choice(("flip", "set", "insert", "delete", "truncate", "dup", "len"))
        n = len(data)
        if op == "truncate":
            del data[rng.randint(0, n) :]
            continue
        if n == 0:
            data += rng.randbytes(rng.randint(1, 8))
            continue
        i = rng.randrange(n)
        if op == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif op == "set":
            data[i] = rng.choice((0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF, rng.randrange(256)))
        elif op == "insert":
            data[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == "delete":
            del data[i : i + rng.randint(1, 16)]
        elif op == "dup":
            data[i:i] = data[i : rng.randint(i, min(n, i + 64))]
        else:
            offsets = _der_lengths(bytes(data))
            if offsets:
                data[rng.choice(offsets)] = rng.choice(_LENGTH_OCTETS)
    return bytes(data)


def batch(seed: int, seeds: Sequence[bytes], *, max_ops: int = 4) -> Iterator[bytes]:
    """Yield the batch of mutated inputs one hypothesis-drawn integer stands for."""
    rng = random.Random(seed)  # noqa: S311  # reproducible mutations, not secrets
    for _ in range(_BATCH[PROFILE]):
        yield mutate(rng, rng.choice(seeds), max_ops=max_ops)
