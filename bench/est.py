#!/usr/bin/env python3
"""EST load generator: concurrent simpleenroll over TLS against a real `privca serve`.

Starts `privca serve` on a fresh data dir (SQLite, or a fresh PostgreSQL database) on
free loopback ports, creates an enrollment account, and then for each concurrency level
runs N simpleenroll requests with HTTP Basic and N with a TLS client certificate
(the device's own privca certificate), keep-alive connections, one per worker (or, with
--new-connections, a TLS handshake per enrollment). It then
measures raw engine issuance (``CAEngine.issue`` on the same database, in this process)
at the same concurrency for the ratio. Prints enrollments/s and p50/p99 latency.

Every loop is bounded in count (--requests) and time (--timeout); only 127.0.0.1 is used.

Examples:
    .venv/bin/python bench/est.py --db sqlite --concurrency 1 32 --requests 2000
    .venv/bin/python bench/est.py --db postgres --concurrency 32 --requests 3000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgdb import fresh_database  # noqa: E402 - bench/pgdb.py, beside this script

from server.ca import grants  # noqa: E402
from server.ca.types import Principal  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.wiring import open_services  # noqa: E402

PG_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD: Final = "bench-password-0123456789"  # noqa: S105 - throwaway bench account
CSR_POOL: Final = 64


@dataclass(frozen=True, slots=True)
class Result:
    """One measured phase."""

    db: str
    mode: str
    concurrency: int
    requests: int
    ok: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    # CPU of the process doing the issuing (the server, or this one for engine.issue):
    # contention-independent cost per enrollment.
    cpu_ms: float = float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _csr_pool(n: int, subject: str | None = None) -> list[bytes]:
    """Return n P-256 CSRs (one fixed subject, or bench-device-i with a serialNumber)."""
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = (
            [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
            if subject
            else [
                x509.NameAttribute(NameOID.COMMON_NAME, f"bench-device-{i}"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, f"B{i:05d}"),
            ]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
        out.append(csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run_load(
    n: int, concurrency: int, budget: float, one: Callable[[int], Awaitable[bool]]
) -> tuple[int, int, float, list[float]]:
    """Run ``one(i)`` n times with ``concurrency`` workers; stop early after ``budget`` s."""
    counter = iter(range(n))
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + budget

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            ok = await one(i)
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), errors, time.perf_counter() - start, latencies


def _proc_cpu(pid: int) -> float:
    """Return user+system CPU seconds of a process and its children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():  # `serve --workers N`: the extra processes are children
        total += sum(_proc_cpu(int(c)) for c in children.read_text().split())
    return total


def _result(
    db: str,
    mode: str,
    c: int,
    n: int,
    run: tuple[int, int, float, list[float]],
    cpu_seconds: float,
) -> Result:
    ok, errors, seconds, lat = run
    return Result(
        db=db,
        mode=mode,
        concurrency=c,
        requests=n,
        ok=ok,
        errors=errors,
        seconds=round(seconds, 3),
        per_second=round(ok / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(lat, 0.50) * 1000, 2),
        p99_ms=round(_percentile(lat, 0.99) * 1000, 2),
        cpu_ms=round(cpu_seconds * 1000 / ok, 2) if ok else float("nan"),
    )


@contextlib.asynccontextmanager
async def _database(kind: str) -> AsyncIterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    async with fresh_database(PG_ADMIN) as url:
        yield url


def _privca() -> str:
    local = ROOT / ".venv" / "bin" / "privca"
    return str(local) if local.exists() else (shutil.which("privca") or "privca")


async def _wait_port(port: int, proc: subprocess.Popen[bytes], budget: float = 30) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("privca serve exited during startup")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("privca serve did not start listening")


def _b64(der: bytes) -> bytes:
    return base64.encodebytes(der)


async def _bench_db(db: str, args: argparse.Namespace, csrs: list[bytes]) -> list[Result]:
    results: list[Result] = []
    async with _database(db) as url:
        work = Path(tempfile.mkdtemp(prefix="privca-est-bench-"))
        data = work / "data"
        https, http = _free_port(), _free_port()
        common = ["--data-dir", str(data)] + (["--database-url", url] if url else [])
        # One address sends every request: lift the per-client limit (it stays in the path).
        config = work / "privca.toml"
        config.write_text("[est]\nrequests_per_second = 1000000\nrequest_burst = 1000000\n")
        log = (work / "serve.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting the server under test once
            [
                _privca(),
                "serve",
                *common,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--https-port",
                str(https),
                "--http-port",
                str(http),
                "--workers",
                str(args.workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await _wait_port(https, proc)
            subprocess.run(  # noqa: ASYNC221 - one setup command before the load
                [_privca(), "est", "user", "add", *common, "bench", "--password", PASSWORD],
                check=True,
                capture_output=True,
                timeout=60,
            )
            results += await _http_phases(db, args, csrs, https, data, work, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if "engine" in args.modes:
            results += await _engine_phase(db, args, csrs, data, url)
        shutil.rmtree(work, ignore_errors=True)
    return results


async def _http_phases(
    db: str,
    args: argparse.Namespace,
    csrs: list[bytes],
    port: int,
    data: Path,
    work: Path,
    server_pid: int,
) -> list[Result]:
    url = f"https://127.0.0.1:{port}/.well-known/est/simpleenroll"
    bodies = [_b64(c) for c in csrs]
    # A device authenticated by its privca certificate may only ask for its own identity.
    own_bodies = [_b64(c) for c in _csr_pool(len(csrs), subject="bench-client")]
    basic = {"Authorization": aiohttp.encode_basic_auth("bench", PASSWORD)}
    headers = {"Content-Type": "application/pkcs10"}
    base_ctx = ssl.create_default_context(cafile=str(data / "ca-bundle.pem"))
    base_ctx.check_hostname = False  # the TLS cert names localhost; we dial 127.0.0.1
    # A device certificate for the client-cert runs, enrolled once with Basic.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-client")]))
        .sign(key, hashes.SHA256())
    )
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=base_ctx)) as session,
        session.post(
            url,
            data=_b64(csr.public_bytes(serialization.Encoding.DER)),
            headers={**headers, **basic},
        ) as resp,
    ):
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"bootstrap enrollment failed: {resp.status} {body[:200]!r}")
    cert = pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(body.split())))[0]
    (work / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / "client.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_ctx = ssl.create_default_context(cafile=str(data / "ca-bundle.pem"))
    cert_ctx.check_hostname = False
    cert_ctx.load_cert_chain(work / "client.pem", work / "client.key")

    results = []
    for c in args.concurrency:
        for mode, ctx, use_auth in (
            ("https+basic", base_ctx, True),
            ("https+cert", cert_ctx, False),
        ):
            if mode.removeprefix("https+") not in args.modes:
                continue
            # --new-connections: a TLS handshake per enrollment, as a device that enrolls
            # once and goes away (libest's estclient opens a connection per operation).
            connector = aiohttp.TCPConnector(ssl=ctx, limit=c, force_close=args.new_connections)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(
                    i: int, session: aiohttp.ClientSession = session, use_auth: bool = use_auth
                ) -> bool:
                    async with session.post(
                        url,
                        data=(bodies if use_auth else own_bodies)[i % len(bodies)],
                        headers={**headers, **basic} if use_auth else headers,
                    ) as r:
                        await r.read()
                        return r.status == 200

                await _run_load(min(50, args.requests), c, args.timeout, one)  # warm-up
                cpu0 = _proc_cpu(server_pid)
                run = await _run_load(args.requests, c, args.timeout, one)
                cpu = _proc_cpu(server_pid) - cpu0
            res = _result(db, mode, c, args.requests, run, cpu)
            _print(res)
            results.append(res)
    return results


async def _engine_phase(
    db: str, args: argparse.Namespace, csrs: list[bytes], data: Path, url: str | None
) -> list[Result]:
    settings = load_settings(None, data_dir=data, database_url=url)
    principal = Principal("bench", "engine")
    results = []
    async with open_services(settings) as services:
        engine = services.engine

        async def one(i: int) -> bool:
            await engine.issue(
                csrs[i % len(csrs)], principal=principal, grant=grants.OPERATOR, profile="device"
            )
            return True

        for c in args.concurrency:
            await _run_load(min(50, args.requests), c, args.timeout, one)
            cpu0 = time.process_time()
            run = await _run_load(args.requests, c, args.timeout, one)
            res = _result(db, "engine.issue", c, args.requests, run, time.process_time() - cpu0)
            _print(res)
            results.append(res)
    return results


def _print(r: Result) -> None:
    print(
        f"{r.db:<9} {r.mode:<13} c={r.concurrency:<3} n={r.ok:<6} err={r.errors:<4} "
        f"{r.per_second:>8.1f}/s  p50 {r.p50_ms:>7.2f} ms  p99 {r.p99_ms:>7.2f} ms  "
        f"cpu {r.cpu_ms:>5.2f} ms/enrollment",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> list[Result]:
    # Other work on this 2-core machine skews every figure: say how busy it was.
    load1, _, _ = os.getloadavg()
    print(f"cores {os.cpu_count()}, load average before the run {load1:.2f}", flush=True)
    csrs = _csr_pool(CSR_POOL)
    results: list[Result] = []
    for db in args.db:
        results += await _bench_db(db, args, csrs)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase (bounded)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument(
        "--workers", type=int, default=1, help="`privca serve --workers N` (processes, both ports)"
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["basic", "cert", "engine"],
        default=["basic", "cert", "engine"],
        help="phases to run (all by default; the ratios need engine)",
    )
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="one TLS connection (full handshake) per enrollment instead of keep-alive",
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    results = asyncio.run(main_async(args))
    print()
    print("| db | mode | c | enrollments/s | p50 ms | p99 ms | CPU ms/enrollment | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cells = (r.db, r.mode, r.concurrency, r.per_second, r.p50_ms, r.p99_ms, r.cpu_ms, r.errors)
        print("| " + " | ".join(str(x) for x in cells) + " |")
    raw_rates = {(r.db, r.concurrency): r.per_second for r in results if r.mode == "engine.issue"}
    for r in results:
        raw_rate = raw_rates.get((r.db, r.concurrency))
        if r.mode != "engine.issue" and raw_rate:
            ratio = r.per_second / raw_rate
            print(f"{r.db} c={r.concurrency} {r.mode}: {ratio:.2f} x raw engine issuance")
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
