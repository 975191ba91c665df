"""Bulk DAC issuance vs the engine's EC P-256 leaf issuance, same storage, same run.

    .venv/bin/python bench/matter.py [--count 2000] [--concurrency 32] [--pg-url URL]

The DAC figure covers the whole factory path of `privca matter dac issue`: key
generation, building, Matter validation, storage (group-committed with audit events)
and the per-device files (dac.pem, dac.der, key.pem, pai.pem). The engine figure is
``CAEngine.issue`` of tls-server leaves from P-256 CSRs (parse, check, build, sign,
store) at the given concurrency, as bench/issue.py measures it. "Files alone" times
the CLI's bundle writer on the already-issued credentials: the disk's own rate. Both run on a fresh
SQLite database (and PostgreSQL with --pg-url). Loops are bounded by --count.
Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from issue import make_csrs  # bench/issue.py: the same CSRs as the engine baseline

from server.ca import api, grants, keys
from server.ca.matter import api as matter_api
from server.ca.types import Principal
from server.cli import matter as cli_matter
from server.store.database import Database, sqlite_url
from server.store.repository import SqlRepository

OP = Principal("bench", "matter")

PASSPHRASE = b"bench-passphrase-0123456789"
VID, PID = 0xFFF1, 0x8000


async def engine_rate(engine: api.CAEngine, csrs: list[bytes], concurrency: int) -> float:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, path_length=0)
    await engine.issue(
        csrs[0], principal=OP, grant=grants.OPERATOR, profile="tls-server"
    )  # warm the key cache
    queue = list(reversed(csrs[1:]))

    async def worker() -> None:
        while queue:
            await engine.issue(
                queue.pop(), principal=OP, grant=grants.OPERATOR, profile="tls-server"
            )

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (len(csrs) - 1) / (time.perf_counter() - start)


async def dac_rate(
    engine: api.CAEngine,
    count: int,
    out: Path | None,
    keep: list[Sequence[matter_api.DeviceCredential]] | None = None,
) -> float:
    service = matter_api.MatterService(engine)
    await service.create_paa("paa", actor=OP, vid=VID)
    pai = await service.create_pai("pai", paa="paa", vid=VID, pid=PID, actor=OP)
    if out is not None:
        (out / "pai.pem").write_bytes(pai.certificate.public_bytes(serialization.Encoding.PEM))
    done = 0
    async with contextlib.AsyncExitStack() as stack:
        # The CLI's own file writer (its process starts inside the timed span, as in the CLI).
        start = time.perf_counter()
        writer = (
            await stack.enter_async_context(cli_matter.BundleWriter(out, width=6, vid=VID, pid=PID))
            if out
            else None
        )
        async for batch in service.issue_dacs(
            pai="pai", vid=VID, pid=PID, actor=OP, grant=grants.OPERATOR, count=count
        ):
            if writer is not None:
                await writer.submit(batch)
            if keep is not None:
                keep.append(batch)
            done += len(batch)
        if writer is not None:
            await writer.finish()
        elapsed = time.perf_counter() - start
    return done / elapsed


async def files_rate(
    batches: list[Sequence[matter_api.DeviceCredential]], out_dir: str | None
) -> float:
    """Device bundles/s of the CLI's file writer alone, for already-issued credentials.

    The disk's own speed in the same run: when it is below the DAC rate, the
    with-files figure measures the disk, not issuance.
    """
    out = Path(tempfile.mkdtemp(prefix="privca-bench-files-", dir=out_dir))
    try:
        (out / "pai.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
        start = time.perf_counter()
        async with cli_matter.BundleWriter(out, width=6, vid=VID, pid=PID) as writer:
            for batch in batches:
                await writer.submit(batch)
            await writer.finish()
            done = len(writer.rows)
            elapsed = time.perf_counter() - start
        return done / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


async def run_on(url: str, args: argparse.Namespace, csrs: list[bytes]) -> list[float]:
    """Return [engine leaves/s, DACs/s with files, DACs/s without files, files/s] on one storage."""
    rates = []
    kept: list[Sequence[matter_api.DeviceCredential]] = []
    for which in ("engine", "dac", "dac-no-files"):
        db = Database(url, pool_size=20)
        try:
            await db.migrate()
            engine = api.CAEngine(
                SqlRepository(db),
                keys.Pkcs8KeyBackend(PASSPHRASE),
                settings=api.EngineSettings(default_ca="issuing"),
            )
            if which == "engine":
                rates.append(await engine_rate(engine, csrs, args.concurrency))
            elif which == "dac-no-files":
                rates.append(await dac_rate(engine, args.count, None, kept))
            else:
                out = Path(tempfile.mkdtemp(prefix="privca-bench-dacs-", dir=args.out_dir))
                try:
                    rates.append(await dac_rate(engine, args.count, out))
                finally:
                    shutil.rmtree(out, ignore_errors=True)
        finally:
            await db.close()
        await reset(url)
    rates.append(await files_rate(kept, args.out_dir))
    return rates


async def reset(url: str) -> None:
    """Empty the database between runs (each run starts from a fresh schema)."""
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            if db.is_sqlite:
                tables = await conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
                for (name,) in tables.all():
                    await conn.exec_driver_sql(f'DROP TABLE "{name}"')
            else:
                await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                await conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        await db.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="DACs and engine leaves")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg-url", help="a scratch PostgreSQL database (its schema is reset)")
    parser.add_argument("--out-dir", help="where the DAC bundles are written (default: TMPDIR)")
    args = parser.parse_args()
    args.count = max(1, min(args.count, 100_000))
    csrs = make_csrs(args.count + 1)
    results: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("sqlite", await run_on(sqlite_url(Path(tmp) / "bench.db"), args, csrs)))
    if args.pg_url:
        await reset(args.pg_url)
        results.append(("postgresql", await run_on(args.pg_url, args, csrs)))
    print(f"count={args.count} concurrency={args.concurrency}")
    print(
        "| storage | engine EC P-256 leaves/s | bulk DACs/s (with files) | ratio "
        "| bulk DACs/s (no files) | ratio | files alone (bundles/s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for storage, (engine_s, dac_s, bare_s, files_s) in results:
        print(
            f"| {storage} | {engine_s:.0f} | {dac_s:.0f} | {dac_s / engine_s:.0%} "
            f"| {bare_s:.0f} | {bare_s / engine_s:.0%} | {files_s:.0f} |"
        )
    print(
        json.dumps(
            {
                "count": args.count,
                "results": [
                    {
                        "storage": storage,
                        "engine_per_s": round(r[0], 1),
                        "dac_per_s": round(r[1], 1),
                        "dac_no_files_per_s": round(r[2], 1),
                        "files_alone_per_s": round(r[3], 1),
                    }
                    for storage, r in results
                ],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
