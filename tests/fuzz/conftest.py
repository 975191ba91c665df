"""Fuzzing profiles, case counting, a memory guard and the whole server stack in-process.

``PRIVCA_FUZZ`` picks the hypothesis profile: ``bounded`` (default, the normal pytest
run) or ``long`` (``make fuzz``). Each target declares its weight with
``strategies.examples(weight)``; the profile scales it. Every case bumps a per-target
counter; the terminal summary prints cases and time per target, the figures the README
and reports quote.
"""

from __future__ import annotations

import resource
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter
from aiohttp.test_utils import TestClient

from server.app import create_http_app, create_https_app
from server.ca.types import Principal
from server.config import load_settings
from server.store.database import sqlite_url
from server.wiring import Services, build_est_service, ensure_first_start, open_services
from tests.fuzz import strategies
from tests.protocols.ocsp.conftest import ClientFactory

OP = Principal("operator", "fuzz")
EST_PASSWORD = "fuzz-password-0123"
# Peak RSS may grow this much while one fuzz target runs (KiB, as ru_maxrss reports it).
_MAX_RSS_GROWTH_KIB = 256 * 1024


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if not strategies.CASES:
        return
    total = sum(strategies.CASES.values())
    seconds = sum(strategies.SECONDS.values())
    terminalreporter.section(f"fuzz ({strategies.PROFILE} profile)")
    for target in sorted(strategies.CASES):
        cases, took = strategies.CASES[target], strategies.SECONDS[target]
        terminalreporter.write_line(f"{target:<40} {cases:>9} cases {took:8.1f} s")
    terminalreporter.write_line(f"{'total':<40} {total:>9} cases {seconds:8.1f} s")


@pytest.fixture(autouse=True)
def _memory_bounded(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a target whose run grows the peak RSS by more than the bound."""
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack")  # the server's start-up is not the target's growth
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    yield
    strategies.SECONDS[request.node.originalname] += time.monotonic() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < _MAX_RSS_GROWTH_KIB, f"peak RSS grew by {grown} KiB during {request.node.name}"


@dataclass
class Stack:
    """The real applications on one SQLite database: HTTPS (ACME, EST) and HTTP (OCSP, CRL)."""

    services: Services
    https: TestClient[Any, Any]
    http: TestClient[Any, Any]


@pytest.fixture
async def stack(
    sqlite_template: Path, tmp_path: Path, aiohttp_client: ClientFactory
) -> AsyncIterator[Stack]:
    """privca as `privca serve` builds it, with EST user dev1 and no request-rate limits."""
    shutil.copyfile(sqlite_template, tmp_path / "fuzz.db")
    settings = load_settings(
        None,
        data_dir=tmp_path / "data",
        database_url=sqlite_url(tmp_path / "fuzz.db"),
        est={
            "requests_per_second": 0,
            "failed_logins_per_minute": 0,
            "failed_logins_per_account_per_minute": 0,
        },
        revocation={"crl_debounce_seconds": 0},
    )
    async with open_services(settings, create=True) as services:
        await ensure_first_start(services)
        est = build_est_service(services)
        await est.add_user("default", "dev1", EST_PASSWORD, actor=OP)
        https = await aiohttp_client(create_https_app(services, est_service=est))
        http = await aiohttp_client(create_http_app(services, maintenance=False))
        yield Stack(services, https, http)
