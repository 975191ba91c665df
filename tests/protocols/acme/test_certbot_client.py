"""Happy paths driven by certbot's ``acme`` package, a client we did not write.

``acme.client.ClientV2`` speaks ``requests`` synchronously, so each call runs in a
thread (``asyncio.to_thread``) against the aiohttp test server on a real port,
while the event loop serves it. Validation answers go through the tests'
FakeNetwork. certbot's ``acme`` has no keyChange call; that flow stays in
test_accounts.py with the hand-rolled signer, as do the hostile requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import acme.client
import acme.errors
import acme.messages
import pytest
from acme import challenges
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from josepy import jwa, jwk

from tests.protocols.acme.conftest import AcmeEnv
from tests.support import make_csr

T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking ``acme`` call in a thread so the loop can serve it."""
    return await asyncio.to_thread(fn, *args)


def _deadline() -> datetime:
    # acme.client compares deadlines with a naive local datetime.now().
    return (datetime.now(UTC) + timedelta(seconds=20)).astimezone().replace(tzinfo=None)


async def certbot_client(env: AcmeEnv, key: Any = None) -> acme.client.ClientV2:
    private = key or ec.generate_private_key(ec.SECP256R1())
    net = acme.client.ClientNetwork(
        jwk.JWKEC(key=private), alg=jwa.ES256, user_agent="privca-tests"
    )
    url = str(env.http.make_url("/acme/directory"))
    directory = await off_loop(acme.client.ClientV2.get_directory, url, net)
    return acme.client.ClientV2(directory, net)


async def register(client: acme.client.ClientV2) -> acme.messages.RegistrationResource:
    new = acme.messages.NewRegistration.from_data(
        email="ops@example.internal", terms_of_service_agreed=True
    )
    return await off_loop(client.new_account, new)


def answer(env: AcmeEnv, client: acme.client.ClientV2, authz: Any, kind: type[Any]) -> Any:
    """Publish the validation for ``kind`` on the fake network; return (challenge, response)."""
    challb = next(c for c in authz.body.challenges if isinstance(c.chall, kind))
    response, validation = challb.chall.response_and_validation(client.net.key)
    name = authz.body.identifier.value
    if kind is challenges.HTTP01:
        env.network.http_answers[challb.chall.encode("token")] = validation
    else:
        env.network.txt_records.setdefault(challb.chall.validation_domain_name(name), []).append(
            validation
        )
    return challb, response


async def issue(
    env: AcmeEnv, client: acme.client.ClientV2, names: list[str], kind: type[Any]
) -> tuple[acme.messages.OrderResource, bytes]:
    csr_pem, _ = make_csr([f"dns:{n}" for n in names])
    order = await off_loop(client.new_order, csr_pem)
    for authz in order.authorizations:
        challb, response = answer(env, client, authz, kind)
        await off_loop(client.answer_challenge, challb, response)
    done = await off_loop(client.poll_and_finalize, order, _deadline())
    return done, csr_pem


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(challenges.HTTP01, id="ok/http-01"),
        pytest.param(challenges.DNS01, id="ok/dns-01"),
    ],
)
async def test_certbot_client_orders_validates_finalizes_and_downloads(
    acme_env: AcmeEnv, kind: type[Any]
) -> None:
    client = await certbot_client(acme_env)
    regr = await register(client)
    assert regr.body.status == "valid"
    assert regr.uri.startswith(str(acme_env.http.make_url("/acme/")))

    order, _ = await issue(acme_env, client, ["web.internal", "api.internal"], kind)

    assert order.body.status == acme.messages.STATUS_VALID
    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["api.internal", "web.internal"]
    assert len(chain) >= 2
    asked = {kind_ for kind_, *_ in acme_env.network.requests}
    assert asked == {"http" if kind is challenges.HTTP01 else "dns"}


async def test_certbot_client_reads_renewal_info_revokes_and_a_second_revocation_is_refused(
    acme_env: AcmeEnv,
) -> None:
    client = await certbot_client(acme_env)
    await register(client)
    order, _ = await issue(acme_env, client, ["gone.internal"], challenges.HTTP01)
    leaf = x509.load_pem_x509_certificates(order.fullchain_pem.encode())[0]
    # ARI (RFC 9773) as certbot reads it: a renewal time inside the certificate's life.
    renew_at, _ = await off_loop(client.renewal_time, order.fullchain_pem.encode())
    assert renew_at is not None
    assert leaf.not_valid_before_utc <= renew_at <= leaf.not_valid_after_utc

    await off_loop(client.revoke, leaf, 1)

    with pytest.raises(acme.messages.Error) as again:
        await off_loop(client.revoke, leaf, 1)
    assert again.value.code == "alreadyRevoked"


async def test_certbot_client_updates_and_deactivates_its_account(acme_env: AcmeEnv) -> None:
    client = await certbot_client(acme_env)
    regr = await register(client)
    updated = await off_loop(
        client.update_registration,
        regr,
        regr.body.update(contact=("mailto:new@example.internal",)),
    )
    assert updated.body.contact == ("mailto:new@example.internal",)

    gone = await off_loop(client.deactivate_registration, updated)
    assert gone.body.status == "deactivated"
    # Negative control: the deactivated account can no longer order.
    csr_pem, _ = make_csr(["dns:late.internal"])
    with pytest.raises(acme.messages.Error) as refused:
        await off_loop(client.new_order, csr_pem)
    assert refused.value.code == "unauthorized"


async def test_certbot_client_signed_by_a_foreign_key_is_refused(acme_env: AcmeEnv) -> None:
    client = await certbot_client(acme_env)
    regr = await register(client)
    # Negative control: the same account URL with another key does not verify.
    intruder = await certbot_client(acme_env)
    intruder.net.account = regr
    csr_pem, _ = make_csr(["dns:stolen.internal"])
    with pytest.raises(acme.messages.Error) as refused:
        await off_loop(intruder.new_order, csr_pem)
    assert refused.value.code == "malformed"
