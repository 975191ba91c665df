"""Issue 14: an offline root served with no readable root key anywhere.

The operator flow runs through the CLI (``create-root --offline --key-out``,
``create-sub --key``, ``sign-offline --key``, ``cert revoke``); the root's key is only
in the file the operator carries, and a fresh serving stack (the HTTP apps ``serve``
mounts, on the same database) must serve the ceremony's CRL and OCSP answers, keep
issuing from the sub-CA, warn before expiry, and never ask the key backend for the
root's key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from server.app import create_http_app
from server.ca import grants, keys
from server.ca.errors import EngineError
from server.ca.signer import Signer
from server.ca.status import api as status_api
from server.ca.status import crls
from server.ca.types import CA, KeyHandle, Principal
from server.cli import main
from server.config import load_settings, status_settings
from server.store.database import Database
from server.store.status_repository import SqlStatusRepository
from server.wiring import Services, open_services
from tests.server.ca.status.test_responder import ocsp_request
from tests.support import FakeClock, make_csr, openssl_verify

OP = Principal("operator", "test")
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
DAYS = 30


class Cli:
    """``privca`` on the test's data dir and database, run off the event loop."""

    def __init__(self, data: Path, database: Database, capsys: pytest.CaptureFixture[str]):
        self.data = str(data)
        self.url = database.url
        self._capsys = capsys
        self.key = ""  # the root's key file, written by create-root --key-out

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        argv = [*args[:2], "--data-dir", self.data, "--database-url", self.url, *args[2:]]
        code = await asyncio.to_thread(main, argv)
        out = self._capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
async def cli(database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    run = Cli(tmp_path / "data", database, capsys)
    key = run.key = str(tmp_path / "root.key")
    assert (await run("ca", "create-root", "root", "--offline", "--key-out", key))[0] == 0
    # Signing under an offline CA is a ceremony too: run where the key is.
    assert (await run("ca", "create-sub", "sub", "--parent", "root", "--key", key))[0] == 0
    code, out, err = await run("ca", "sign-offline", "root", "--days", str(DAYS), "--key", key)
    assert code == 0, err
    assert "2 OCSP answer(s)" in out  # the root's own certificate and the sub-CA's
    return run


async def stored_bytes(database: Database) -> bytes:
    """Return every row of every table, as bytes, plus the SQLite files when there are any."""
    out = bytearray()
    async with database.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for table in tables:
            for row in await conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the schema
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
                    out += b"\x00"
    if database.url.startswith("sqlite"):
        path = Path(database.url.split("///", 1)[1])
        out += await asyncio.to_thread(_sqlite_files, path)
    return bytes(out)


def _sqlite_files(path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            out += Path(f"{path}{suffix}").read_bytes()
    return out


def key_material(key_file: Path) -> list[bytes]:
    """Return what would betray the key: its PEM, its base64 body lines, its DER."""
    text = key_file.read_bytes()
    body = [line for line in text.splitlines() if line and not line.startswith(b"-----")]
    der = base64.b64decode(b"".join(body))
    return [text, der, *body[1:-1]]


class LoadSpy:
    """Record every key handle the serving engine asks its key backend for.

    The engine is the only holder of the serving stack's key backend (``open_services``),
    so every code path that could load a key goes through this method; the CLI runs
    in this process too, with backends of its own, and is not counted.
    """

    def __init__(self, backend: keys.KeyBackends, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loaded: list[KeyHandle] = []
        original = backend.load

        def load(handle: KeyHandle) -> Signer:
            self.loaded.append(handle)
            return original(handle)

        monkeypatch.setattr(backend, "load", load)


@pytest.fixture
async def serving(
    cli: Cli, database: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    settings = load_settings(
        None,
        data_dir=Path(cli.data),
        database_url=database.url,
        revocation={"crl_debounce_seconds": 0},
    )
    # The CRL publisher keeps its answer for 1 s; a ceremony's new CRL shows at once here.
    monkeypatch.setattr(crls, "_CACHE_SECONDS", 0.0)
    async with open_services(settings) as svc:
        yield svc


async def _ocsp(client: TestClient[Any, Any], body: bytes) -> ocsp.OCSPResponse:
    resp = await client.post(
        "/ocsp", data=body, headers={"Content-Type": "application/ocsp-request"}
    )
    assert resp.status == 200
    return ocsp.load_der_ocsp_response(await resp.read())


async def _status(
    client: TestClient[Any, Any], serial: int, issuer: x509.Certificate
) -> ocsp.OCSPResponse:
    answer = await _ocsp(client, ocsp_request(issuer, [serial]))
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert answer.signature_hash_algorithm is not None
    key.verify(
        answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm)
    )
    return answer


async def _crl(client: TestClient[Any, Any], ca: CA) -> x509.CertificateRevocationList:
    resp = await client.get(f"/crl/{ca.id}.crl")
    assert resp.status == 200
    crl = x509.load_der_x509_crl(await resp.read())
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    return crl


def _days_left(when: datetime | None) -> float:
    assert when is not None
    return (when - datetime.now(UTC)) / timedelta(days=1)


async def test_offline_root_is_served_without_its_key(
    cli: Cli,
    serving: Services,
    database: Database,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the operator's file holds the root's key: no row, no database file has it.
    stored = await stored_bytes(database)
    assert [m[:16] for m in key_material(Path(cli.key)) if m in stored] == []
    backend = serving.engine._keys
    assert isinstance(backend, keys.KeyBackends)
    spy = LoadSpy(backend, monkeypatch)
    client = await aiohttp_client(create_http_app(serving, maintenance=False))
    assert serving.status is not None
    root = await serving.engine.get_ca("root")
    sub = await serving.engine.get_ca("sub")
    assert root.offline
    assert not serving.engine.in_ceremony
    assert root.key.backend == "carried"  # the public key only
    assert root.key.blob == root.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sub_serial = sub.certificate.serial_number

    # The ceremony's CRL: signed by the root, valid N days, accepted by openssl.
    crl = await _crl(client, root)
    assert _days_left(crl.next_update_utc) > DAYS - 1
    der = crl.public_bytes(serialization.Encoding.DER)
    checked = openssl_verify(sub.certificate, [root.certificate], extra=["-crl_check"], crls=[der])
    assert checked.returncode == 0, checked.stderr

    # The sub-CA's OCSP status at the root: the ceremony's answer, good for N days.
    answer = await _status(client, sub_serial, root.certificate)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert _days_left(answer.next_update_utc) > DAYS - 1

    # No stored answer and no delegated signer: an unknown serial is "unauthorized".
    unknown = await _ocsp(client, ocsp_request(root.certificate, [0x1234]))
    assert unknown.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED

    # Issuance under the sub-CA keeps working (and its status); the root issues nothing.
    csr, _ = make_csr(["dns:leaf.internal"])
    issued = await serving.engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="sub"
    )
    leaf = await _status(client, issued.certificate.serial_number, sub.certificate)
    assert leaf.certificate_status is ocsp.OCSPCertStatus.GOOD
    with pytest.raises(EngineError, match=r"ca\.offline"):
        await serving.engine.issue(
            csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="root"
        )

    # The CRL schedule and the OCSP refresh leave the root's ceremony output alone.
    assert root.id not in await serving.status.crls.tick()
    await serving.status.responder.refresh_stale()

    # Revoke the sub-CA: published at the root's next ceremony, not before.
    code, _, err = await cli("cert", "revoke", f"{sub_serial:X}", "--ca", "root")
    assert code == 0, err
    assert root.id not in await serving.status.crls.tick()
    crl = await _crl(client, root)
    assert crl.get_revoked_certificate_by_serial_number(sub_serial) is None
    # Without the key file there is no ceremony, nor with another CA's key file.
    code, _, err = await cli("ca", "sign-offline", "root", "--days", str(DAYS))
    assert code == 1
    assert "ca.key-carried" in err
    other = str(Path(cli.key).with_name("other.key"))
    code, _, err = await cli("ca", "create-root", "other", "--offline", "--key-out", other)
    assert code == 0, err
    code, _, err = await cli("ca", "sign-offline", "root", "--days", str(DAYS), "--key", other)
    assert code == 1
    assert "does not hold CA key" in err
    code, _, err = await cli("ca", "sign-offline", "root", "--days", str(DAYS), "--key", cli.key)
    assert code == 0, err
    await serving.status.responder.poll_changes()
    crl = await _crl(client, root)
    assert crl.get_revoked_certificate_by_serial_number(sub_serial) is not None
    answer = await _status(client, sub_serial, root.certificate)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED

    # Not once did this serving stack ask for the root's key.
    assert [h.ref for h in spy.loaded if h.ref == root.key.ref] == []
    assert any(h.ref == sub.key.ref for h in spy.loaded)  # the spy sees real loads


async def _warning(caplog: pytest.LogCaptureFixture, status: status_api.StatusService) -> str:
    """Run serve's maintenance loop until it logs about an offline CA; return that line."""
    task = asyncio.create_task(status.run_maintenance())
    try:
        async with asyncio.timeout(10):
            while True:
                found = [r for r in caplog.records if "offline CA" in r.getMessage()]
                if found:
                    assert found[0].levelno == logging.WARNING
                    return found[0].getMessage()
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_serve_warns_days_before_the_ceremony_lapses(
    cli: Cli, serving: Services, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(datetime.now(UTC))
    status = status_api.StatusService(
        serving.engine,
        serving.repo,
        SqlStatusRepository(serving.db),
        settings=status_settings(serving.settings),
        clock=clock,
    )
    warn_days = serving.settings.ca.offline_warn_days
    assert warn_days == 7
    until = await status.offline.valid_until(await serving.engine.get_ca("root"))
    assert DAYS - 1 < _days_left(until) <= DAYS

    # `privca ca show` and `ca list` tell when the next ceremony is due.
    code, out, _ = await cli("ca", "show", "root")
    assert code == 0
    shown = json.loads(out)
    assert shown["offline"] is True
    due = datetime.fromisoformat(shown["ceremony_due"])
    assert abs(due - (until - timedelta(days=warn_days))) < timedelta(seconds=1)
    code, out, _ = await cli("ca", "list")
    assert due.isoformat(timespec="seconds") in out

    # Well before: no warning.
    clock.advance(timedelta(days=DAYS - warn_days) - timedelta(hours=1))
    assert await status.offline.check() == []
    # Within offline_warn_days: serve's maintenance loop warns.
    clock.advance(timedelta(hours=2))
    line = await _warning(caplog, status)
    assert "offline CA root" in line
    assert "sign-offline root" in line
    # Once a day per CA, not per round.
    assert await status.offline.check() == []
    clock.advance(timedelta(hours=23))
    assert await status.offline.check() == []
    clock.advance(timedelta(hours=1))
    assert await status.offline.check() == ["root"]


async def test_a_revocation_makes_the_ceremony_due_now(cli: Cli, serving: Services) -> None:
    assert serving.status is not None
    root = await serving.engine.get_ca("root")
    sub = await serving.engine.get_ca("sub")
    assert await serving.status.offline.check() == []
    code, _, err = await cli("cert", "revoke", f"{sub.certificate.serial_number:X}", "--ca", "root")
    assert code == 0, err
    # The stored answer still says good: the next ceremony is due at once.
    assert _days_left(await serving.status.offline.valid_until(root)) <= 0
    assert await serving.status.offline.check() == ["root"]


async def test_renewing_under_an_offline_root_is_a_ceremony(cli: Cli, serving: Services) -> None:
    code, _, err = await cli("ca", "renew", "sub")
    assert code == 1
    assert "ca.key-carried" in err
    code, out, err = await cli("ca", "renew", "sub", "--key", cli.key)
    assert code == 0, err
    assert "renewed CA sub" in out
    code, out, err = await cli("ca", "renew", "root", "--key", cli.key)
    assert code == 0, err
    # Issuance from the offline root stays refused, in any process.
    code, _, err = await cli("cert", "issue", "--ca", "root", "--san", "dns:x.internal")
    assert code == 1
    assert "ca.offline" in err


async def test_key_out_is_required_private_and_never_overwrites(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Cli(tmp_path / "data", database, capsys)
    key = tmp_path / "root.key"
    # An offline software root without --key-out would leave its key in the database.
    code, _, err = await run("ca", "create-root", "root", "--offline")
    assert code == 1
    assert "--key-out" in err
    key.write_text("precious\n")
    code, _, err = await run("ca", "create-root", "root", "--offline", "--key-out", str(key))
    assert code == 1
    assert "refusing to overwrite" in err
    assert key.read_text() == "precious\n"
    code, _, err = await run("ca", "create-root", "root", "--key-out", str(tmp_path / "k"))
    assert code == 1
    assert "goes with --offline" in err
    code, out, _ = await run("ca", "list")
    assert "root" not in out  # nothing was created by the refused commands
    key.unlink()

    # An online root goes offline later: the key moves out then.
    assert (await run("ca", "create-root", "root"))[0] == 0
    code, _, err = await run("ca", "set-offline", "root")
    assert code == 1
    assert "--key-out" in err
    code, out, err = await run("ca", "set-offline", "root", "--key-out", str(key))
    assert code == 0, err
    assert str(key) in out
    assert key.stat().st_mode & 0o777 == 0o600
    passphrase = (tmp_path / "data" / "ca-key.passphrase").read_text().strip()
    opened = await asyncio.to_thread(
        subprocess.run,
        ["openssl", "pkey", "-in", str(key), "-passin", f"pass:{passphrase}", "-noout"],
        capture_output=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr  # standard encrypted PKCS#8
    stored = await stored_bytes(database)
    assert [m[:16] for m in key_material(key) if m in stored] == []

    # Coming online needs the file back, and the right one.
    code, _, err = await run("ca", "set-online", "root")
    assert code == 1
    assert "--key FILE" in err
    other = tmp_path / "other.key"
    assert (await run("ca", "create-root", "other", "--offline", "--key-out", str(other)))[0] == 0
    code, _, err = await run("ca", "set-online", "root", "--key", str(other))
    assert code == 1
    assert "does not hold CA key" in err
    code, _, err = await run("ca", "set-online", "root", "--key", str(key))
    assert code == 0, err
    code, _, err = await run("ca", "renew", "root")  # signs with the key from the database
    assert code == 0, err
    async with database.engine.connect() as conn:
        backend = (
            await conn.execute(sa.text("SELECT key_backend FROM cas WHERE name = 'root'"))
        ).scalar_one()
    assert backend == "pkcs8"
