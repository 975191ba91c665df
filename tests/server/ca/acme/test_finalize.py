"""ACME finalize and certificate download (RFC 8555 §7.4, §7.4.2)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca import api
from server.ca.acme import types as at
from server.ca.acme.service import AcmeService
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.server.ca.acme.support import FakePorts, csr_der, new_account, ready_order


async def test_finalize_issues_the_ordered_names(
    service: AcmeService, net: FakePorts, acme_repo: MemoryAcmeRepository
) -> None:
    account = await new_account(service)
    order = await ready_order(service, net, account, "a.corp.internal", "b.corp.internal")
    csr, _ = csr_der("a.corp.internal", "b.corp.internal")
    done = await service.finalizer.finalize(account, order.id, csr)
    assert done.status is at.OrderStatus.VALID
    assert done.cert_ref is not None
    assert acme_repo.orders[order.id].status is at.OrderStatus.VALID
    leaf, chain = await service.finalizer.certificate_chain(account, done.cert_ref)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["a.corp.internal", "b.corp.internal"]
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=issuing,O=privca",
        "CN=root,O=privca",
    ]
    assert (await service.orders.get_order(account, order.id)).cert_ref == done.cert_ref


async def test_finalize_needs_a_ready_order(service: AcmeService) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(account, [("dns", "a.corp.internal")])
    csr, _ = csr_der("a.corp.internal")
    with pytest.raises(EngineError) as err:
        await service.finalizer.finalize(account, order.id, csr)
    assert err.value.kind is ProblemKind.ORDER_NOT_READY


async def test_refused_csr_leaves_the_order_ready(service: AcmeService, net: FakePorts) -> None:
    account = await new_account(service)
    order = await ready_order(service, net, account, "a.corp.internal")
    with pytest.raises(EngineError) as junk:
        await service.finalizer.finalize(account, order.id, b"not a csr")
    assert junk.value.kind is ProblemKind.BAD_CSR
    wrong, _ = csr_der("other.corp.internal")
    with pytest.raises(EngineError) as names:
        await service.finalizer.finalize(account, order.id, wrong)
    assert names.value.kind is ProblemKind.BAD_CSR
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.READY
    good, _ = csr_der("a.corp.internal")
    done = await service.finalizer.finalize(account, order.id, good)
    assert done.status is at.OrderStatus.VALID
    with pytest.raises(EngineError) as twice:
        await service.finalizer.finalize(account, order.id, good)
    assert twice.value.kind is ProblemKind.ORDER_NOT_READY


async def test_download_is_for_the_owner_only_cached_or_not(
    service: AcmeService,
    net: FakePorts,
    ca: api.CAEngine,
    acme_repo: MemoryAcmeRepository,
) -> None:
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    order = await ready_order(service, net, alice, "a.corp.internal")
    done = await service.finalizer.finalize(alice, order.id, csr_der("a.corp.internal")[0])
    assert done.cert_ref is not None
    # Another node shares the stores but not this node's chain cache.
    node2 = AcmeService(ca, acme_repo, ports=net.ports(), settings=service.settings)
    for svc in (service, node2):
        with pytest.raises(EngineError) as err:
            await svc.finalizer.certificate_chain(bob, done.cert_ref)
        assert err.value.kind is ProblemKind.UNAUTHORIZED
    cached = await service.finalizer.certificate_chain(alice, done.cert_ref)
    stored = await node2.finalizer.certificate_chain(alice, done.cert_ref)
    assert stored == cached
    for ref in ("nope", "issuing-zz", f"{done.cert_ref}0"):
        with pytest.raises(EngineError) as missing:
            await node2.finalizer.certificate_chain(alice, ref)
        assert missing.value.kind is ProblemKind.NOT_FOUND


async def test_account_key_is_never_a_certificate_key(service: AcmeService, net: FakePorts) -> None:
    # RFC 8555 §11.1 (Boulder refuses too): a CSR over the account's own key is badCSR.
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mine = at.AccountKey(jwk='{"kid":"real"}', thumbprint="thumb-real", spki=spki)
    account, _ = await service.accounts.new_account(mine)
    order = await ready_order(service, net, account, "a.corp.internal")
    same, _ = csr_der("a.corp.internal", key=key)
    with pytest.raises(EngineError) as err:
        await service.finalizer.finalize(account, order.id, same)
    assert err.value.kind is ProblemKind.BAD_CSR
    assert "account key" in err.value.detail
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.READY
    other, _ = csr_der("a.corp.internal")
    done = await service.finalizer.finalize(account, order.id, other)
    assert done.status is at.OrderStatus.VALID
