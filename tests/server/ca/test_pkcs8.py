"""PKCS#8 key encryption: PBES2 with PBKDF2-SHA256 x 600,000, re-wrapping of weaker keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server import wiring
from server.ca import api, keys, pkcs8
from server.ca.errors import EngineError
from server.ca.types import KeyAlgorithm, KeyHandle, Principal
from server.store.memory import MemoryRepository
from server.store.repository import SqlRepository
from tests.support import TEST_KDF_ROUNDS, TEST_PASSPHRASE

_ADMIN = Principal("operator", "test")


@pytest.mark.production_kdf
def test_production_rounds_are_at_least_600k() -> None:
    assert pkcs8.DEFAULT_ROUNDS >= 600_000
    assert keys.Pkcs8KeyBackend(TEST_PASSPHRASE).kdf_rounds == pkcs8.DEFAULT_ROUNDS
    # What `serve` and the CLI use (other tests lower it through an autouse fixture).
    assert wiring.KDF_ROUNDS == pkcs8.DEFAULT_ROUNDS


def test_encrypted_key_reads_back_and_names_its_rounds(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = pkcs8.encrypt(key, TEST_PASSPHRASE, rounds=2000)
    assert pkcs8.kdf_rounds(pem) == 2000
    loaded = serialization.load_pem_private_key(pem, password=TEST_PASSPHRASE)
    assert loaded.public_key() == key.public_key()
    with pytest.raises(ValueError, match="Incorrect password"):
        serialization.load_pem_private_key(pem, password=b"another-passphrase-0123")
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    out = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", f"pass:{TEST_PASSPHRASE.decode()}"],
        check=True,
        capture_output=True,
    ).stdout
    assert b"BEGIN PRIVATE KEY" in out


def test_kdf_rounds_of_the_old_format_and_garbage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(TEST_PASSPHRASE),
    )
    assert pkcs8.kdf_rounds(old) == 2048
    assert pkcs8.kdf_rounds(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n") is None
    assert pkcs8.kdf_rounds(b"not pem") is None


def test_backend_rewraps_only_weaker_keys() -> None:
    weak = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS)
    strong = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS * 2)
    handle, public = weak.create(KeyAlgorithm.EC_P256, label="k")
    assert weak.rewrap(handle) is None
    fresh = strong.rewrap(handle)
    assert fresh is not None
    assert fresh.ref == handle.ref
    assert pkcs8.kdf_rounds(fresh.blob) == TEST_KDF_ROUNDS * 2
    assert strong.load(fresh).public_key() == public
    assert keys.rewrap(keys.KeyBackends(strong), handle) is not None
    # A handle of another backend is not the software backend's to re-wrap.
    foreign = KeyHandle(backend="pkcs11", ref="x", blob=b"")
    assert keys.rewrap(keys.KeyBackends(strong), foreign) is None


def test_rewrap_with_the_wrong_passphrase_is_an_engine_error() -> None:
    handle, _ = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=1000).create(
        KeyAlgorithm.EC_P256, label="k"
    )
    other = keys.Pkcs8KeyBackend(b"another-passphrase-0123", kdf_rounds=2000)
    with pytest.raises(EngineError, match="wrong passphrase"):
        other.rewrap(handle)


async def test_engine_rewraps_a_weak_ca_key_on_unlock() -> None:
    await _check_rewrap_on_unlock(MemoryRepository())


async def test_engine_rewraps_a_weak_ca_key_on_unlock_sql(sql_repo: SqlRepository) -> None:
    await _check_rewrap_on_unlock(sql_repo)


async def _check_rewrap_on_unlock(repo: MemoryRepository | SqlRepository) -> None:
    weak = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS)
    root = await api.CAEngine(repo, weak).create_root("root", actor=_ADMIN)
    assert pkcs8.kdf_rounds(root.key.blob) == TEST_KDF_ROUNDS

    strong = keys.Pkcs8KeyBackend(TEST_PASSPHRASE, kdf_rounds=TEST_KDF_ROUNDS * 3)
    engine = api.CAEngine(repo, strong)
    await engine.create_subordinate("sub", parent="root", actor=_ADMIN)  # unlocks root
    stored = await repo.get_ca_by_name("root")
    assert stored is not None
    assert pkcs8.kdf_rounds(stored.key.blob) == TEST_KDF_ROUNDS * 3
    assert stored.key.ref == root.key.ref
    rewraps = [e for e in await repo.list_audit(limit=50) if e.action == "ca.key-rewrap"]
    assert [e.target for e in rewraps] == ["root"]

    # Unlocked again by another process: already strong, nothing rewritten.
    await api.CAEngine(repo, strong).create_subordinate("sub2", parent="root", actor=_ADMIN)
    rewraps = [e for e in await repo.list_audit(limit=50) if e.action == "ca.key-rewrap"]
    assert len(rewraps) == 1
