"""The OpenAPI document against the live admin API: property tests with schemathesis.

An aiohttp server runs the admin API in its own thread and event loop over a real
database (SQLite, PostgreSQL); schemathesis generates requests from the document,
valid and invalid, with an unscoped owner token, and checks every answer: no 5xx,
a documented status, the documented content type and a body matching the schema.
Path parameters (and ``?ca=``) are narrowed, in a copy of the document, to what the
fixture holds (its CAs, leaves, labels, accounts, held enrollments, directories and
EAB key), so valid requests reach the operations rather than 404s.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocols.admin import links, openapi
from server.ca import keys
from server.ca.admin import api as admin_api
from server.store.database import Database, sqlite_url
from tests.protocols.admin.conftest import OP, build_env, directory_of, label_of
from tests.support import TEST_KDF_ROUNDS, TEST_PASSPHRASE

_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _Live:
    """The admin API served from a background thread until ``stop``."""

    def __init__(self, url: str, reset: tuple[str, str] | None) -> None:
        self._url = url
        self._reset = reset
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.token = ""
        self.values: dict[str, list[str]] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._reset is not None:
            conn = await asyncpg.connect(self._reset[0], timeout=10)
            try:
                await conn.execute(self._reset[1])
            finally:
                await conn.close()
        db = Database(self._url)
        runner: web.AppRunner | None = None

        async def serve(app: web.Application) -> Any:
            nonlocal runner
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # started above
            return None

        try:
            backend = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS)
            env = await build_env(db, serve, backend)
            _, self.token = await env.service.create_token(
                "fuzzer",
                role=admin_api.Role.OWNER,
                scope=None,
                lifetime=timedelta(days=1),
                actor=OP,
            )
            self.values = {
                "ca": ["root", "teamA", "teamB"],
                "serial": [leaf.serial_hex for leaf in env.leaves.values()],
                "label": [label_of(t) for t in ("teamA", "teamB")] + ["default"],
                "username": ["device1"],
                "id": list(env.pending.values()),
                "name": [directory_of(t) for t in ("teamA", "teamB")],
                "kid": [env.eab_kid],
            }
            self._ready.set()
            await self._stop.wait()
        finally:
            if runner is not None:
                await runner.cleanup()
            await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Live]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "live.db")
        server = _Live(sqlite_url(tmp_path / "live.db"), None)
    else:
        pg = request.getfixturevalue("pg_database")
        server = _Live(pg.url, (pg.dsn, pg.reset_sql))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _narrowed(document: dict[str, Any], values: dict[str, list[str]]) -> dict[str, Any]:
    """Return a copy of ``document`` whose path parameters (and ``?ca=``) list fixture values."""
    out = copy.deepcopy(document)
    for operations in out["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" or param["name"] == "ca":
                    param["schema"] = {"type": "string", "enum": values[param["name"]]}
    return out


def test_live_api_conforms_to_its_openapi_document(live: _Live) -> None:
    schema = schemathesis.openapi.from_dict(_narrowed(openapi.DOCUMENT, live.values))
    base = f"http://127.0.0.1:{live.port}{links.PREFIX}"
    auth = {"Authorization": f"Bearer {live.token}"}
    strategy = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )

    seen: dict[int, int] = {}

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base, headers=auth, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=_CHECKS)

    run()
    print("admin API statuses under schemathesis:", dict(sorted(seen.items())))  # noqa: T201
    # The run reached the operations themselves, not only the front door: more
    # successes than misses.
    ok = sum(n for status, n in seen.items() if 200 <= status < 300)
    assert ok > seen.get(404, 0), seen
    assert 400 in seen, seen
