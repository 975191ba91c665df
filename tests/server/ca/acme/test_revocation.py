"""ACME revocation rules (RFC 8555 §7.6): by the issuing account or the certificate's key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server.ca import api, keys
from server.ca.acme import types as at
from server.ca.acme.service import AcmeService
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CertQuery, CertStatus, Principal, RevocationReason
from server.store.memory import MemoryRepository
from tests.server.ca.acme.support import FakePorts, csr_der, new_account, ready_order


async def _issue(
    service: AcmeService, net: FakePorts, account: at.Account
) -> tuple[bytes, CertificateIssuerPrivateKeyTypes]:
    order = await ready_order(service, net, account, "a.corp.internal")
    csr, key = csr_der("a.corp.internal")
    done = await service.finalizer.finalize(account, order.id, csr)
    assert done.cert_ref is not None
    leaf, _ = await service.finalizer.certificate_chain(account, done.cert_ref)
    return leaf.public_bytes(serialization.Encoding.DER), key


def _spki(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def _status(ca: api.CAEngine, der: bytes) -> CertStatus:
    (rec,) = [r for r in await ca.find_certificates(CertQuery(limit=100)) if r.der == der]
    return rec.status


async def test_the_issuing_account_revokes(
    service: AcmeService, net: FakePorts, ca: api.CAEngine
) -> None:
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    der, _ = await _issue(service, net, alice)
    with pytest.raises(EngineError) as foreign:
        await service.revocation.revoke(der, reason_code=1, account=bob)
    assert foreign.value.kind is ProblemKind.UNAUTHORIZED
    assert await _status(ca, der) is CertStatus.VALID
    await service.revocation.revoke(der, reason_code=1, account=alice)
    assert await _status(ca, der) is CertStatus.REVOKED
    with pytest.raises(EngineError) as twice:
        await service.revocation.revoke(der, reason_code=None, account=alice)
    assert twice.value.kind is ProblemKind.ALREADY_REVOKED


async def test_an_account_authorized_for_every_name_revokes(
    service: AcmeService, net: FakePorts, ca: api.CAEngine
) -> None:
    # RFC 8555 §7.6: an account holding valid authorizations for all names MUST be allowed.
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    der, _ = await _issue(service, net, alice)
    await ready_order(service, net, bob, "b.corp.internal")  # another name does not count
    with pytest.raises(EngineError) as partial:
        await service.revocation.revoke(der, reason_code=1, account=bob)
    assert partial.value.kind is ProblemKind.UNAUTHORIZED
    await ready_order(service, net, bob, "a.corp.internal")
    await service.revocation.revoke(der, reason_code=1, account=bob)
    assert await _status(ca, der) is CertStatus.REVOKED


async def test_the_certificate_key_revokes(
    service: AcmeService, net: FakePorts, ca: api.CAEngine
) -> None:
    der, key = await _issue(service, net, await new_account(service))
    _, other_key = csr_der("x.corp.internal")
    for spki in (None, _spki(other_key)):
        with pytest.raises(EngineError) as err:
            await service.revocation.revoke(der, reason_code=None, key_spki=spki)
        assert err.value.kind is ProblemKind.UNAUTHORIZED
    await service.revocation.revoke(der, reason_code=None, key_spki=_spki(key))
    (rec,) = [r for r in await ca.find_certificates(CertQuery(limit=100)) if r.der == der]
    assert rec.status is CertStatus.REVOKED
    assert rec.revocation_reason is RevocationReason.UNSPECIFIED


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(2, id="fail/ca-compromise"),
        pytest.param(6, id="fail/certificate-hold"),
        pytest.param(8, id="fail/remove-from-crl"),
        pytest.param(10, id="fail/aa-compromise"),
        pytest.param(7, id="fail/unassigned"),
        pytest.param(99, id="fail/unknown"),
    ],
)
async def test_refused_reasons(
    service: AcmeService, net: FakePorts, ca: api.CAEngine, code: int
) -> None:
    account = await new_account(service)
    der, _ = await _issue(service, net, account)
    with pytest.raises(EngineError) as err:
        await service.revocation.revoke(der, reason_code=code, account=account)
    assert err.value.kind is ProblemKind.BAD_REVOCATION_REASON
    assert await _status(ca, der) is CertStatus.VALID


async def test_unknown_and_foreign_certificates(
    service: AcmeService, ca: api.CAEngine, key_backend: keys.Pkcs8KeyBackend
) -> None:
    account = await new_account(service)
    with pytest.raises(EngineError) as junk:
        await service.revocation.revoke(b"junk", reason_code=None, account=account)
    assert junk.value.kind is ProblemKind.MALFORMED
    # The root is in this server's inventory, but no account requested it.
    root = (await ca.chain_of(await ca.get_ca(None)))[-1]
    with pytest.raises(EngineError) as foreign:
        await service.revocation.revoke(
            root.public_bytes(serialization.Encoding.DER), reason_code=None, account=account
        )
    assert foreign.value.kind is ProblemKind.UNAUTHORIZED
    elsewhere = api.CAEngine(MemoryRepository(), key_backend)
    await elsewhere.create_root("elsewhere", actor=Principal("operator", "test"))
    other_root = (await elsewhere.chain_of(await elsewhere.get_ca("elsewhere")))[-1]
    with pytest.raises(EngineError) as unknown:
        await service.revocation.revoke(
            other_root.public_bytes(serialization.Encoding.DER), reason_code=None, account=account
        )
    assert unknown.value.kind is ProblemKind.NOT_FOUND
