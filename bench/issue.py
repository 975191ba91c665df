"""Leaf issuance throughput: raw cryptography vs the engine into memory, SQLite, PostgreSQL.

    .venv/bin/python bench/issue.py [--count 2000] [--concurrency 32] [--pg-url URL]

Prints a Markdown table (issuances/s) and one JSON line. The raw figure builds
and signs the same kind of leaf (P-256 issuer, tls-server extensions) with
cryptography alone; the engine figures include CSR parsing and signature
check, policy, building, signing and the storage transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pgdb import fresh_database  # bench/pgdb.py, beside this script

from server.ca import api, grants, keys
from server.ca.types import Principal
from server.store.database import Database, sqlite_url
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository

OP = Principal("bench", "issue")
PASSPHRASE = b"bench-passphrase-0123456789"


def make_csrs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"h{i}.bench.internal")]), False
            )
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.DER))
    return out


def raw_rate(count: int) -> float:
    """Build + sign tls-server-like leaves with cryptography only (no CSR, no storage)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raw issuing")])
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    now = datetime.now(UTC)
    start = time.perf_counter()
    for i in range(count):
        (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{i}.bench.internal")])
            )
            .issuer_name(ca_name)
            .public_key(leaf_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key), False)
            .add_extension(aki, False)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"h{i}.bench.internal")]), False
            )
            .sign(ca_key, hashes.SHA256())
        )
    return count / (time.perf_counter() - start)


async def engine_rate(
    engine: api.CAEngine, csrs: list[bytes], concurrency: int
) -> tuple[float, float, float]:
    """Return (issuances/s, p50 ms, p99 ms) for the engine at a concurrency."""
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)
    await engine.issue(
        csrs[0], principal=OP, grant=grants.OPERATOR, profile="tls-server"
    )  # warm the key cache
    queue = list(reversed(csrs[1:]))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            csr = queue.pop()
            t0 = time.perf_counter()
            await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="tls-server")
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3


async def with_db(
    url: str, fn: Callable[[api.CAEngine], Awaitable[tuple[float, float, float]]]
) -> tuple[float, float, float]:
    db = Database(url, pool_size=20)
    try:
        await db.migrate()
        engine = api.CAEngine(
            SqlRepository(db),
            keys.Pkcs8KeyBackend(PASSPHRASE),
            settings=api.EngineSettings(default_ca="issuing"),
        )
        return await fn(engine)
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg-url", help="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    csrs = make_csrs(args.count + 1)
    rows: list[tuple[str, float, float | None, float | None]] = []
    rows.append(("raw cryptography build+sign (P-256)", raw_rate(args.count), None, None))
    mem = api.CAEngine(
        MemoryRepository(),
        keys.Pkcs8KeyBackend(PASSPHRASE),
        settings=api.EngineSettings(default_ca="issuing"),
    )
    rows.append(
        (
            f"engine, in-memory store, c={args.concurrency}",
            *await engine_rate(mem, csrs, args.concurrency),
        )
    )
    for conc in (1, args.concurrency):
        with tempfile.TemporaryDirectory() as tmp:
            url = sqlite_url(Path(tmp) / "bench.db")
            rate = await with_db(url, lambda e, c=conc: engine_rate(e, csrs, c))
            rows.append((f"engine -> SQLite, c={conc}", *rate))
    if args.pg_url:
        for conc in (1, args.concurrency):
            async with fresh_database(args.pg_url) as url:
                rate = await with_db(url, lambda e, c=conc: engine_rate(e, csrs, c))
            rows.append((f"engine -> PostgreSQL, c={conc}", *rate))
    print(f"\nLeaf issuance, {args.count} certificates (P-256 issuer, tls-server profile)\n")
    print("| path | issuances/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, rate, p50, p99 in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {name} | {rate:,.0f} | {fmt(p50)} | {fmt(p99)} |")
    print(
        json.dumps(
            {
                "bench": "issue",
                "count": args.count,
                "rows": [
                    {"path": r[0], "per_s": round(r[1], 1), "p50_ms": r[2], "p99_ms": r[3]}
                    for r in rows
                ],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
