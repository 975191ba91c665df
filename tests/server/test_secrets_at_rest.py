"""Secrets at rest: file modes after first start, sealed EAB and nonce MAC keys, passphrase."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import private_files, wiring
from server.ca import pkcs8, sealing
from server.ca.types import Principal
from server.config import ConfigError, load_settings
from tests.support import TEST_PASSPHRASE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 0: modes must come from privca, not from the caller's umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setenv("PRIVCA_KEY_PASSPHRASE", TEST_PASSPHRASE.decode())
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return TEST_PASSPHRASE


@pytest.mark.production_kdf
@pytest.mark.usefixtures("open_umask")
async def test_first_start_leaves_no_file_readable_by_others(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # as `serve`'s pid file (or an operator) may have made it
    settings = load_settings(None, data_dir=data)
    async with wiring.open_services(settings, create=True, serving=True) as services:
        tls = await wiring.ensure_first_start(services)
        # The WAL and SHM files exist while the database is open.
        assert (data / "privca.db-wal").exists()
        assert (data / "privca.db-shm").exists()
        for name in ("privca.db", "privca.db-wal", "privca.db-shm", "ca-key.passphrase"):
            assert _mode(data / name) == 0o600, name
        # The default hierarchy's keys use the production KDF.
        for ca in await services.engine.list_cas():
            assert pkcs8.kdf_rounds(ca.key.blob) == pkcs8.DEFAULT_ROUNDS, ca.name
    assert _mode(data) == 0o700
    assert _mode(tls.key) == 0o600
    assert _mode(tls.key.parent) == 0o700
    assert _mode(tls.cert) == 0o644


@pytest.mark.usefixtures("open_umask")
async def test_later_start_tightens_an_existing_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(None, data_dir=data)
    async with wiring.open_services(settings, create=True) as services:
        await wiring.ensure_first_start(services)
    # As a release before this one (or a careless copy) left them.
    os.chmod(data, 0o755)  # noqa: S103 - the wide mode under test
    os.chmod(data / "privca.db", 0o644)
    async with wiring.open_services(settings):
        pass
    assert _mode(data) == 0o700
    assert _mode(data / "privca.db") == 0o600


@pytest.mark.usefixtures("open_umask")
def test_write_private_never_keeps_a_wider_mode(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    path.write_bytes(b"old")
    path.chmod(0o666)
    private_files.write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]


def _database_bytes(data: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in data.iterdir() if p.name.startswith("privca.db") and p.is_file()
    )


@pytest.mark.usefixtures("passphrase")
async def test_database_holds_no_usable_eab_or_nonce_key(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data")
    async with wiring.open_services(settings, create=True) as services:
        acme = wiring.build_acme_service(services)
        eab = await acme.accounts.create_eab_key(actor=Principal("operator", "test"))
        nonce = await acme.new_nonce()
        await acme.use_nonce(nonce)  # the stored MAC key verifies what it signed
        files = _database_bytes(tmp_path / "data")
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "privca.db")) as db:
            (stored_eab,) = db.execute(
                "SELECT hmac_key FROM acme_eab_keys WHERE kid = ?", (eab.kid,)
            ).fetchone()
            (stored_mac,) = db.execute(
                "SELECT value FROM acme_state WHERE key = 'nonce-secret'"
            ).fetchone()
    sealer = sealing.Sealer(TEST_PASSPHRASE)
    mac_key = sealer.open(stored_mac, context=b"acme nonce mac key")
    assert len(mac_key) == 32
    assert eab.hmac_key not in files
    assert mac_key not in files
    assert eab.hmac_key not in stored_eab
    with pytest.raises(sealing.SealedError):
        sealing.Sealer(b"another-passphrase-0123").open(stored_mac, context=b"acme nonce mac key")


@pytest.mark.usefixtures("passphrase")
async def test_plain_secrets_of_an_older_install_are_sealed_on_start(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data")
    async with wiring.open_services(settings, create=True):
        pass
    plain_eab, plain_mac = os.urandom(32), os.urandom(32)
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "privca.db")) as db:
        db.execute(
            "INSERT INTO acme_eab_keys (kid, hmac_key, created_at, revoked)"
            " VALUES ('old', ?, '2026-01-01 00:00:00', 0)",
            (plain_eab,),
        )
        db.execute("INSERT INTO acme_state (key, value) VALUES ('nonce-secret', ?)", (plain_mac,))
        db.commit()
    async with wiring.open_services(settings) as services:
        acme = wiring.build_acme_service(services)
        listed = {k.kid: k.hmac_key for k in await acme.accounts.list_eab_keys()}
        assert listed["old"] == plain_eab
        await acme.use_nonce(await acme.new_nonce())
        # Checked while the server still runs: the sealing must not wait for its exit.
        files = _database_bytes(tmp_path / "data")
    assert plain_eab not in files
    assert plain_mac not in files


def test_passphrase_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIVCA_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    file = tmp_path / "etc" / "pass"
    settings = load_settings(None, data_dir=tmp_path / "data", key_passphrase_file=str(file))
    with pytest.raises(ConfigError, match="no CA key passphrase"):
        wiring.load_passphrase(settings, create=False)
    file.parent.mkdir()
    file.write_text("from-the-file-0123456789\n")
    assert wiring.load_passphrase(settings, create=False) == b"from-the-file-0123456789"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "privca-passphrase").write_text("from-systemd-0123456789")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert wiring.load_passphrase(settings, create=False) == b"from-systemd-0123456789"
    monkeypatch.setenv("PRIVCA_KEY_PASSPHRASE", "from-the-env-0123456789")
    assert wiring.load_passphrase(settings, create=False) == b"from-the-env-0123456789"
