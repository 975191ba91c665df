"""ACME Renewal Information (RFC 9773): certificate ids, windows and ``replaces``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from server.ca.acme import types as at
from server.ca.acme.renewal import cert_id_of
from server.ca.acme.service import AcmeService
from server.ca.errors import EngineError, ProblemKind
from tests.server.ca.acme.support import FakePorts, csr_der, new_account, ready_order
from tests.support import FakeClock


async def _issue(service: AcmeService, net: FakePorts, account: at.Account) -> x509.Certificate:
    order = await ready_order(service, net, account, "a.corp.internal")
    done = await service.finalizer.finalize(account, order.id, csr_der("a.corp.internal")[0])
    assert done.cert_ref is not None
    leaf, _ = await service.finalizer.certificate_chain(account, done.cert_ref)
    return leaf


async def test_window_is_the_fifth_sixth_of_the_lifetime(
    service: AcmeService, net: FakePorts
) -> None:
    leaf = await _issue(service, net, await new_account(service))
    window = await service.renewal.renewal_info(cert_id_of(leaf))
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    start = leaf.not_valid_before_utc + lifetime * 2 / 3
    assert abs(window.start - start) < timedelta(seconds=1)
    assert abs(window.end - (start + lifetime / 6)) < timedelta(seconds=1)
    assert window.retry_after == 6 * 3600


async def test_revoked_certificates_renew_now(
    service: AcmeService, net: FakePorts, clock: FakeClock
) -> None:
    account = await new_account(service)
    leaf = await _issue(service, net, account)
    await service.revocation.revoke(leaf.public_bytes(Encoding.DER), reason_code=4, account=account)
    window = await service.renewal.renewal_info(cert_id_of(leaf))
    assert window.end == clock.now()
    assert window.start == clock.now() - timedelta(hours=1)


@pytest.mark.parametrize(
    ("cert_id", "kind"),
    [
        pytest.param("no-dot", ProblemKind.MALFORMED, id="fail/no-dot"),
        pytest.param(".AQ", ProblemKind.MALFORMED, id="fail/empty-aki"),
        pytest.param("AQ.", ProblemKind.MALFORMED, id="fail/empty-serial"),
        pytest.param("AQ==.AQ", ProblemKind.MALFORMED, id="fail/padded"),
        pytest.param("A+/.AQ", ProblemKind.MALFORMED, id="fail/not-base64url"),
        pytest.param("AQ.AQ", ProblemKind.NOT_FOUND, id="fail/unknown"),
    ],
)
async def test_bad_identifiers(service: AcmeService, cert_id: str, kind: ProblemKind) -> None:
    with pytest.raises(EngineError) as err:
        await service.renewal.renewal_info(cert_id)
    assert err.value.kind is kind


async def test_unknown_issuer_with_a_known_serial(service: AcmeService, net: FakePorts) -> None:
    leaf = await _issue(service, net, await new_account(service))
    _, serial = cert_id_of(leaf).split(".")
    with pytest.raises(EngineError) as err:
        await service.renewal.renewal_info(f"AAAA.{serial}")
    assert err.value.kind is ProblemKind.NOT_FOUND


async def test_replaces_names_an_own_certificate(service: AcmeService, net: FakePorts) -> None:
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    cert_id = cert_id_of(await _issue(service, net, alice))
    with pytest.raises(EngineError) as foreign:
        await service.orders.new_order(bob, [("dns", "a.corp.internal")], replaces=cert_id)
    assert foreign.value.kind is ProblemKind.UNAUTHORIZED
    with pytest.raises(EngineError) as malformed:
        await service.orders.new_order(alice, [("dns", "a.corp.internal")], replaces="junk")
    assert malformed.value.kind is ProblemKind.MALFORMED
    renewal = await service.orders.new_order(alice, [("dns", "a.corp.internal")], replaces=cert_id)
    assert renewal.replaces == cert_id


async def test_a_certificate_is_replaced_once(service: AcmeService, net: FakePorts) -> None:
    # RFC 9773 §5: a second live order naming the same certificate is alreadyReplaced.
    alice = await new_account(service, "alice")
    cert_id = cert_id_of(await _issue(service, net, alice))
    first = await service.orders.new_order(alice, [("dns", "a.corp.internal")], replaces=cert_id)
    with pytest.raises(EngineError) as again:
        await service.orders.new_order(alice, [("dns", "a.corp.internal")], replaces=cert_id)
    assert again.value.kind is ProblemKind.ALREADY_REPLACED
    assert first.id in again.value.detail
    # Once the first replacement is invalid, the certificate may be replaced again.
    for authz in first.authorizations:
        await service.orders.deactivate_authz(alice, authz.id)
    second = await service.orders.new_order(alice, [("dns", "a.corp.internal")], replaces=cert_id)
    assert second.replaces == cert_id
