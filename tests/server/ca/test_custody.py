"""Carried keys: an offline CA's software key out of storage, checked when a ceremony brings it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from server.ca import api, custody, keys
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import KeyHandle, Principal
from server.store.memory import MemoryRepository

OP = Principal("operator", "test")


def _engine(repo: MemoryRepository, software: keys.Pkcs8KeyBackend) -> api.CAEngine:
    return api.CAEngine(repo, keys.KeyBackends(software, custody.CarriedKeys(software)))


async def test_carried_key_leaves_storage_and_only_its_file_signs(
    memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    engine = _engine(memory_repo, key_backend)
    root = await engine.create_root("root", actor=OP)
    other = await engine.create_root("other", actor=OP)
    handle, key_file = await engine.carry_out_key(root)
    _, other_file = await engine.carry_out_key(other)
    root = await engine.set_ca_offline("root", offline=True, actor=OP, key=handle)
    stored = memory_repo.cas[root.id].key
    assert stored.backend == custody.CARRIED
    assert stored.blob == root.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_file not in stored.blob
    # A ceremony without the file cannot sign, nor with another CA's key.
    ceremony = _engine(memory_repo, key_backend)
    ceremony.begin_ceremony()
    with pytest.raises(EngineError, match=r"ca\.key-carried") as exc:
        await ceremony.create_subordinate("sub", parent="root", actor=OP)
    assert exc.value.kind is ProblemKind.POLICY
    with pytest.raises(EngineError, match="does not hold CA key") as exc:
        await ceremony.attach_key(root, other_file)
    assert exc.value.kind is ProblemKind.MALFORMED
    with pytest.raises(EngineError, match="does not decrypt") as exc:
        await ceremony.attach_key(root, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    await ceremony.attach_key(root, key_file)
    sub = await ceremony.create_subordinate("sub", parent="root", actor=OP)
    sub.certificate.verify_directly_issued_by(root.certificate)
    # A file for a key that is not carried is refused rather than ignored.
    with pytest.raises(EngineError, match="not carried") as exc:
        await ceremony.attach_key(other, other_file)
    assert exc.value.kind is ProblemKind.CONFLICT


async def test_swaps_that_would_lose_or_misplace_the_key_are_refused(
    memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    engine = _engine(memory_repo, key_backend)
    root = await engine.create_root("root", actor=OP)
    other = await engine.create_root("other", actor=OP)
    foreign, _ = await engine.carry_out_key(other)
    # Another CA's public key under this CA's name: refused.
    with pytest.raises(EngineError, match="not CA root's key") as exc:
        await engine.set_ca_offline("root", offline=True, actor=OP, key=foreign)
    assert exc.value.kind is ProblemKind.MALFORMED
    # A key kept in storage cannot be the key an offline CA carries.
    with pytest.raises(EngineError, match="cannot go offline") as exc:
        await engine.set_ca_offline(
            "root", offline=True, actor=OP, key=KeyHandle(backend="pkcs8", ref="x", blob=b"k")
        )
    handle, key_file = await engine.carry_out_key(root)
    root = await engine.set_ca_offline("root", offline=True, actor=OP, key=handle)
    with pytest.raises(EngineError, match="already offline") as exc:
        await engine.set_ca_offline("root", offline=True, actor=OP, key=handle)
    assert exc.value.kind is ProblemKind.CONFLICT
    # Online again only with the key brought back.
    with pytest.raises(EngineError, match="bring it back") as exc:
        await engine.set_ca_offline("root", offline=False, actor=OP)
    assert exc.value.kind is ProblemKind.MALFORMED
    with pytest.raises(EngineError, match="cannot go online") as exc:
        await engine.set_ca_offline("root", offline=False, actor=OP, key=handle)
    back = await engine.bring_back_key(root, key_file)
    root = await engine.set_ca_offline("root", offline=False, actor=OP, key=back)
    assert root.key.backend == "pkcs8"
    signer = await engine.key_signer(root.key)
    assert signer.public_key() == root.certificate.public_key()
    # An offline CA whose key is still in storage (an older install) can take it out later.
    await engine.set_ca_offline("other", offline=True, actor=OP)
    later, _ = await engine.carry_out_key(await engine.get_ca("other"))
    moved = await engine.set_ca_offline("other", offline=True, actor=OP, key=later)
    assert custody.is_carried(moved.key)
    # A carried key is not re-made in place, even in a ceremony.
    engine.begin_ceremony()
    with pytest.raises(EngineError, match="bring it back") as exc:
        await engine.renew_ca("other", actor=OP, rekey=True)
    assert exc.value.kind is ProblemKind.CONFLICT
