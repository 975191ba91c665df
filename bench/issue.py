"""Leaf issuance throughput: raw cryptography vs the engine into memory, SQLite, PostgreSQL.

    .venv/bin/python bench/issue.py [--count 2000] [--concurrency 32] [--pg-url URL]
        [--key-backend pkcs11 [--pkcs11-module SO --pkcs11-token LABEL]]

Prints a Markdown table (issuances/s) and one JSON line. The raw figure builds
and signs the same kind of leaf (P-256 issuer, tls-server extensions) with
cryptography alone; the engine figures include CSR parsing and signature
check, policy, building, signing and the storage transaction. With
``--key-backend pkcs11`` it adds in-memory rows for P-256 and RSA-2048 issuing
CAs with the key in process (pkcs8) and in a PKCS#11 token, side by side: a
fresh SoftHSM2 token in a temp dir unless ``--pkcs11-token`` names one (PIN from
PRIVCA_PKCS11_PIN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
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

from server.ca import api, grants, hsm, keys
from server.ca.types import KeyAlgorithm, Principal
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
    engine: api.CAEngine,
    csrs: list[bytes],
    concurrency: int,
    *,
    alg: KeyAlgorithm = KeyAlgorithm.EC_P256,
    key_backend: str | None = None,
) -> tuple[float, float, float]:
    """Return (issuances/s, p50 ms, p99 ms) for the engine at a concurrency."""
    await engine.create_root("root", actor=OP, key_algorithm=alg, key_backend=key_backend)
    await engine.create_subordinate(
        "issuing",
        parent="root",
        actor=OP,
        path_length=0,
        key_algorithm=alg,
        key_backend=key_backend,
    )
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


def softhsm_token(tmp: Path) -> tuple[str, str, str]:
    """Make a fresh SoftHSM2 token under ``tmp``; return (module, label, PIN)."""
    module = "/usr/lib/softhsm/libsofthsm2.so"
    util = shutil.which("softhsm2-util")
    if util is None or not Path(module).exists():
        raise SystemExit("SoftHSM2 is not installed (apt-get install softhsm2)")
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    init = [util, "--init-token", "--free", "--label", "bench", "--so-pin", "5678"]
    subprocess.run([*init, "--pin", "1234"], check=True, capture_output=True)
    return module, "bench", "1234"


async def key_backend_rows(
    args: argparse.Namespace, csrs: list[bytes]
) -> list[tuple[str, float, float, float]]:
    """In-memory issuance with the CA key in process and in the token, P-256 and RSA-2048."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.pkcs11_token:
            module, label = args.pkcs11_module, args.pkcs11_token
            pin = os.environ.get("PRIVCA_PKCS11_PIN", "")
        else:
            module, label, pin = softhsm_token(Path(tmp))
        token = hsm.Pkcs11KeyBackend(
            hsm.SessionPool(hsm.TokenSettings(module=module, token_label=label), lambda: pin)
        )
        rows = []
        for alg in (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048):
            for backend in ("pkcs8", "pkcs11"):
                engine = api.CAEngine(
                    MemoryRepository(),
                    keys.KeyBackends(keys.Pkcs8KeyBackend(PASSPHRASE), token),
                    settings=api.EngineSettings(default_ca="issuing"),
                )
                rate = await engine_rate(
                    engine, csrs, args.concurrency, alg=alg, key_backend=backend
                )
                rows.append((f"engine, in-memory, {alg} CA key in {backend}", *rate))
        token.close()
        return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg-url", help="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--key-backend",
        choices=["pkcs8", "pkcs11"],
        default="pkcs8",
        help="pkcs11: add rows with the CA key in a PKCS#11 token next to in-process keys",
    )
    parser.add_argument("--pkcs11-module", default="/usr/lib/softhsm/libsofthsm2.so")
    parser.add_argument("--pkcs11-token", help="token label (default: a fresh SoftHSM2 token)")
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
    if args.key_backend == "pkcs11":
        rows.extend(await key_backend_rows(args, csrs))
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
