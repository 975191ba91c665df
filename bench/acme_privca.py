"""Start a loopback `privca serve` for bench/acme.py (--start-privca).

A fresh data dir, free ports, ACME test mode (every identifier validated at
127.0.0.1 on the bench's http-01 port); SQLite by default or a fresh PostgreSQL
database with --pg-url. The server is stopped (SIGINT, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrivcaInfo", "run_privca"]


@dataclass(frozen=True)
class PrivcaInfo:
    directory: str
    tls_ca_bundle: Path
    log_path: Path
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _privca() -> str:
    here = Path(sys.executable).parent / "privca"
    return str(here) if here.exists() else (shutil.which("privca") or "privca")


def _pg(admin_url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def run_privca(
    *, http01_port: int, log_dir: Path, pg_url: str | None = None, workers: int = 1
) -> Iterator[PrivcaInfo]:
    """Run privca for the duration of the block (PostgreSQL when ``pg_url`` names a server)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="privca-bench-acme-"))
    https, http = _free_port(), _free_port()
    log_path = log_dir / f"privca-{time.strftime('%Y%m%d-%H%M%S')}.log"
    config = tmp / "bench.toml"
    # The bench opens one account per flow from 127.0.0.1, or hundreds of orders an
    # hour on one shared account: above the default ACME limits by design.
    config.write_text("[acme]\naccounts_per_ip_per_hour = 0\norders_per_account_per_hour = 0\n")
    cmd = [
        _privca(),
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(tmp / "data"),
        "--https-port",
        str(https),
        "--http-port",
        str(http),
        "--acme-resolve-all-to",
        "127.0.0.1",
        "--acme-http01-port",
        str(http01_port),
        "--workers",
        str(workers),
    ]
    db_name = None
    if pg_url:
        db_name = f"privca_bench_{uuid.uuid4().hex[:8]}"
        _pg(pg_url, f'CREATE DATABASE "{db_name}"')
        cmd += ["--database-url", f"{pg_url.rsplit('/', 1)[0]}/{db_name}"]
    env = dict(os.environ)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while "trust bundle" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"privca did not start, see {log_path}")
            time.sleep(0.2)
        yield PrivcaInfo(
            directory=f"https://localhost:{https}/acme/directory",
            tls_ca_bundle=tmp / "data" / "ca-bundle.pem",
            log_path=log_path,
            pid=proc.pid,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        if db_name and pg_url:
            with contextlib.suppress(Exception):
                _pg(pg_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
