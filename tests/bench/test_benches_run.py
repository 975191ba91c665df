"""Every bench in bench/ still runs: the README's tables come from their commands.

Tiny sizes, so this proves the scripts work against today's engine, not their figures.
The PostgreSQL benches need the run's PostgreSQL server (TEST_POSTGRES_URL, or CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
PG_SERVER: Final = os.environ.get("TEST_POSTGRES_URL") or (
    "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    if os.environ.get("CI") == "true"
    else ""
)

pytestmark = pytest.mark.slow


def _run(*args: str, timeout: float = 240) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _need_pg() -> str:
    if not PG_SERVER:
        pytest.skip("no PostgreSQL server (TEST_POSTGRES_URL)")
    return PG_SERVER


def test_issue_bench_runs() -> None:
    out = _run("bench/issue.py", "--count", "40", "--pg-url", _need_pg())
    assert "engine -> PostgreSQL, c=32" in out


def test_est_bench_runs() -> None:
    out = _run("bench/est.py", "--db", "sqlite", "--concurrency", "2", "--requests", "20")
    assert "https+basic" in out
    assert "https+cert" in out


def test_ocsp_bench_runs() -> None:
    if shutil.which("wrk") is None and os.environ.get("CI") != "true":
        pytest.skip("wrk not installed (CI installs it)")
    out = _run(
        "bench/ocsp.py",
        "--certs",
        "300",
        "--duration",
        "1",
        "--crl-sizes",
        "200",
        "--pg-url",
        _need_pg(),
    )
    assert "openssl ocsp" in out
    assert "200" in out


def test_acme_bench_runs() -> None:
    out = _run(
        "bench/acme.py", "--start-privca", "--pg-url", _need_pg(), "--flows", "4",
        "--concurrency", "2",
    )  # fmt: skip
    assert "flows/s" in out


def test_matter_bench_runs(tmp_path: Path) -> None:
    out = _run("bench/matter.py", "--count", "20", "--out-dir", str(tmp_path))
    assert "DAC" in out
