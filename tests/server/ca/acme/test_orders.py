"""ACME orders, authorizations and challenges (RFC 8555 §7.1.6, §7.4, §7.5; RFC 8738)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest

from server.ca import api, keys
from server.ca.acme import types as at
from server.ca.acme import validation
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import Principal
from server.store.memory import MemoryAcmeRepository, MemoryRepository
from tests.server.ca.acme.support import FakePorts, new_account, ready_order, validate_http01
from tests.support import FakeClock

HTTP, DNS, ALPN = at.ChallengeType.HTTP_01, at.ChallengeType.DNS_01, at.ChallengeType.TLS_ALPN_01


@pytest.mark.parametrize(
    ("kind", "value", "shown", "wildcard", "challenges"),
    [
        pytest.param(
            "dns", "a.corp.internal", "a.corp.internal", False, {HTTP, DNS, ALPN}, id="ok/dns"
        ),
        pytest.param("dns", "*.corp.internal", "corp.internal", True, {DNS}, id="ok/wildcard"),
        pytest.param("ip", "10.1.2.3", "10.1.2.3", False, {HTTP, ALPN}, id="ok/ip"),
    ],
)
async def test_new_order_offers_the_challenges_of_each_identifier(
    service: AcmeService,
    kind: str,
    value: str,
    shown: str,
    wildcard: bool,
    challenges: set[at.ChallengeType],
) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(account, [(kind, value)])
    assert order.status is at.OrderStatus.PENDING
    assert order.profile == "tls-server"
    (authz,) = order.authorizations
    assert authz.identifier.value == shown
    assert authz.wildcard is wildcard
    assert {c.type for c in authz.challenges} == challenges
    assert len({c.token for c in authz.challenges}) == len(challenges)


@pytest.mark.parametrize(
    ("identifiers", "kind"),
    [
        pytest.param([], ProblemKind.MALFORMED, id="fail/empty"),
        pytest.param(
            [("email", "a@corp.internal")], ProblemKind.UNSUPPORTED_IDENTIFIER, id="fail/type"
        ),
        pytest.param([("ip", "10.01.2.3")], ProblemKind.MALFORMED, id="fail/not-an-ip"),
        pytest.param(
            [("ip", "192.168.1.1")], ProblemKind.REJECTED_IDENTIFIER, id="fail/ip-outside"
        ),
        pytest.param([("dns", "a.example.com")], ProblemKind.REJECTED_IDENTIFIER, id="fail/suffix"),
        pytest.param(
            [("dns", "A.corp.internal")], ProblemKind.REJECTED_IDENTIFIER, id="fail/upper"
        ),
        pytest.param(
            [("dns", f"h{i}.corp.internal") for i in range(101)],
            ProblemKind.REJECTED_IDENTIFIER,
            id="fail/too-many",
        ),
    ],
)
async def test_identifier_policy(
    service: AcmeService, identifiers: list[tuple[str, str]], kind: ProblemKind
) -> None:
    account = await new_account(service)
    with pytest.raises(EngineError) as err:
        await service.orders.new_order(account, identifiers)
    assert err.value.kind is kind


async def test_non_canonical_ip_is_malformed(service: AcmeService) -> None:
    account = await new_account(service)
    with pytest.raises(EngineError) as err:
        await service.orders.new_order(account, [("ip", "10.1.2.03")])
    assert err.value.kind is ProblemKind.MALFORMED


async def test_duplicate_identifiers_collapse(service: AcmeService) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(
        account, [("dns", "a.corp.internal"), ("dns", "a.corp.internal")]
    )
    assert len(order.identifiers) == 1
    assert len(order.authz_ids) == 1


async def test_profiles_and_validity_window(service: AcmeService, clock: FakeClock) -> None:
    account = await new_account(service)
    with pytest.raises(EngineError) as err:
        await service.orders.new_order(account, [("dns", "a.corp.internal")], profile="nope")
    assert err.value.kind is ProblemKind.INVALID_PROFILE
    short = await service.orders.new_order(
        account, [("dns", "a.corp.internal")], profile="shortlived"
    )
    assert short.profile == "short-lived"
    assert service.orders.acme_profile(short.profile) == "shortlived"
    assert set(service.orders.profiles()) == {"tls-server", "shortlived"}
    now = clock.now()
    for not_before, not_after in [
        (now + timedelta(days=2), now + timedelta(days=1)),  # after before
        (None, now - timedelta(seconds=1)),  # in the past
        (None, now + timedelta(days=3650)),  # beyond the profile's lifetime
        (now + timedelta(days=30), None),  # starts too late
    ]:
        with pytest.raises(EngineError) as window:
            await service.orders.new_order(
                account, [("dns", "a.corp.internal")], not_before=not_before, not_after=not_after
            )
        assert window.value.kind is ProblemKind.MALFORMED


async def test_valid_challenge_makes_the_order_ready_and_authz_is_reused(
    service: AcmeService, net: FakePorts, acme_repo: MemoryAcmeRepository, clock: FakeClock
) -> None:
    account = await new_account(service)
    order = await ready_order(service, net, account, "a.corp.internal")
    (authz,) = order.authorizations
    assert authz.status is at.AuthzStatus.VALID
    http = authz.challenge(HTTP)
    assert http is not None
    assert http.status is at.ChallengeStatus.VALID
    assert http.validated is not None
    assert net.requests == ["a.corp.internal"]
    assert set(acme_repo.validating) == set()
    clock.advance(timedelta(seconds=1))
    second = await service.orders.new_order(account, [("dns", "a.corp.internal")])
    assert second.authz_ids == order.authz_ids
    assert second.status is at.OrderStatus.READY
    assert await service.orders.list_orders(account) == [second.id, order.id]


async def test_wrong_answer_invalidates_authz_and_order(
    service: AcmeService, net: FakePorts
) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(account, [("dns", "a.corp.internal")])
    (authz,) = order.authorizations
    token = authz.challenge(HTTP)
    assert token is not None
    net.http_answers[token.token] = "not the key authorization"
    await service.orders.respond_challenge(account, authz.id, "http-01")
    await service.orders.wait_idle()
    failed = await service.orders.get_authz(account, authz.id)
    assert failed.status is at.AuthzStatus.INVALID
    chall = failed.challenge(HTTP)
    assert chall is not None
    assert chall.error is not None
    assert chall.error.kind is ProblemKind.INCORRECT_RESPONSE
    _, same = await service.orders.respond_challenge(account, authz.id, "http-01")
    assert same == chall
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.INVALID


async def test_respond_challenge_is_idempotent_while_processing(
    service: AcmeService, net: FakePorts
) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(account, [("dns", "a.corp.internal")])
    (authz,) = order.authorizations
    _, first = await service.orders.respond_challenge(account, authz.id, "http-01")
    _, second = await service.orders.respond_challenge(account, authz.id, "http-01")
    assert first.status is second.status is at.ChallengeStatus.PROCESSING
    await service.orders.wait_idle()
    assert len(net.requests) == 1
    with pytest.raises(EngineError) as err:
        await service.orders.respond_challenge(account, authz.id, "http-02")
    assert err.value.kind is ProblemKind.NOT_FOUND
    # The authorization failed (no answer was set): other challenges no longer start.
    failed, dns = await service.orders.respond_challenge(account, authz.id, "dns-01")
    assert failed.status is at.AuthzStatus.INVALID
    assert dns.status is at.ChallengeStatus.PENDING
    await service.orders.wait_idle()
    assert len(net.requests) == 1


async def test_expiry_is_derived_from_the_clock(
    service: AcmeService, net: FakePorts, clock: FakeClock
) -> None:
    account = await new_account(service)
    order = await ready_order(service, net, account, "a.corp.internal")
    clock.advance(timedelta(days=8))
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.INVALID
    (authz_id,) = order.authz_ids
    clock.advance(timedelta(days=30))
    assert (await service.orders.get_authz(account, authz_id)).status is at.AuthzStatus.EXPIRED


async def test_other_accounts_see_nothing(service: AcmeService) -> None:
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    order = await service.orders.new_order(alice, [("dns", "a.corp.internal")])
    for call in (
        service.orders.get_order(bob, order.id),
        service.orders.get_authz(bob, order.authz_ids[0]),
        service.orders.respond_challenge(bob, order.authz_ids[0], "http-01"),
    ):
        with pytest.raises(EngineError) as err:
            await call
        assert err.value.kind is ProblemKind.UNAUTHORIZED
    with pytest.raises(EngineError) as missing:
        await service.orders.get_order(alice, "nope")
    assert missing.value.kind is ProblemKind.NOT_FOUND


async def test_new_authz_and_deactivation(service: AcmeService) -> None:
    account = await new_account(service)
    with pytest.raises(EngineError) as wildcard:
        await service.orders.new_authz(account, "dns", "*.corp.internal")
    assert wildcard.value.kind is ProblemKind.MALFORMED
    authz = await service.orders.new_authz(account, "dns", "pre.corp.internal")
    assert authz.status is at.AuthzStatus.PENDING
    gone = await service.orders.deactivate_authz(account, authz.id)
    assert gone.status is at.AuthzStatus.DEACTIVATED
    with pytest.raises(EngineError) as twice:
        await service.orders.deactivate_authz(account, authz.id)
    assert twice.value.kind is ProblemKind.MALFORMED


async def test_authorization_changes_are_audited_in_the_memory_store(
    service: AcmeService, acme_repo: MemoryAcmeRepository, net: FakePorts
) -> None:
    account = await new_account(service)
    before = len(acme_repo.audit)
    pre = await service.orders.new_authz(account, "dns", "pre.corp.internal", source="192.0.2.7")
    await service.orders.deactivate_authz(account, pre.id, source="192.0.2.8")
    order = await service.orders.new_order(account, [("dns", "a.corp.internal")])
    await service.orders.respond_challenge(
        account, order.authz_ids[0], "dns-01", source="192.0.2.9"
    )
    await service.orders.wait_idle()
    who = f"acme:{account.id}"
    assert [(e.actor, e.action, e.target, e.source) for e in acme_repo.audit[before:]] == [
        (who, "acme.authz-create", pre.id, "192.0.2.7"),
        (who, "acme.authz-deactivate", pre.id, "192.0.2.8"),
        (who, "acme.order-create", order.id, ""),
        (who, "acme.authz-validate", order.authz_ids[0], "192.0.2.9"),
    ]
    # The resolver's SERVFAIL stays in the log: the record names the problem type only.
    assert acme_repo.audit[-1].detail == {
        "identifier": "dns:a.corp.internal",
        "challenge": "dns-01",
        "result": "invalid",
        "error": "dns",
    }


async def test_deactivated_authz_invalidates_its_order(
    service: AcmeService, net: FakePorts
) -> None:
    account = await new_account(service)
    order = await service.orders.new_order(
        account, [("dns", "a.corp.internal"), ("dns", "b.corp.internal")]
    )
    await validate_http01(service, net, account, order.authorizations[0])
    await service.orders.deactivate_authz(account, order.authz_ids[1])
    assert (await service.orders.get_order(account, order.id)).status is at.OrderStatus.INVALID


class TestOrderLimit:
    @pytest.fixture
    def acme_settings(self) -> AcmeSettings:
        return AcmeSettings(orders_per_account_per_hour=1, authz_reuse=False)

    async def test_orders_per_account_are_limited(
        self, service: AcmeService, clock: FakeClock
    ) -> None:
        account = await new_account(service)
        first = await service.orders.new_order(account, [("dns", "a.corp.internal")])
        with pytest.raises(EngineError) as err:
            await service.orders.new_order(account, [("dns", "a.corp.internal")])
        assert err.value.kind is ProblemKind.RATE_LIMITED
        clock.advance(timedelta(hours=1))
        second = await service.orders.new_order(account, [("dns", "a.corp.internal")])
        assert second.authz_ids != first.authz_ids


@pytest.mark.parametrize(
    ("resolve_all_to", "allow", "refused"),
    [
        pytest.param(None, (), ["127.0.0.1", "169.254.169.254", "::1"], id="default-deny"),
        pytest.param("127.0.0.1", (), [], id="test-mode-connects-elsewhere"),
        pytest.param(None, ("127.0.0.0/8",), ["169.254.169.254", "::1"], id="allow-list"),
    ],
)
async def test_ip_identifiers_that_validation_must_not_reach(
    key_backend: keys.Pkcs8KeyBackend,
    clock: FakeClock,
    net: FakePorts,
    resolve_all_to: str | None,
    allow: tuple[str, ...],
    refused: list[str],
) -> None:
    # Issue 13 (SSRF): orders for ip:127.0.0.1 and ip:169.254.169.254 were accepted and
    # their challenges fetched from exactly those addresses.
    engine = api.CAEngine(
        MemoryRepository(), key_backend, settings=api.EngineSettings(default_ca="r"), clock=clock
    )
    await engine.create_root("r", actor=Principal("operator", "test"))
    checks = validation.ValidationSettings(
        resolve_all_to=resolve_all_to,
        allow_targets=tuple(ipaddress.ip_network(a) for a in allow),
    )
    service = AcmeService(
        engine,
        MemoryAcmeRepository(),
        ports=net.ports(),
        settings=AcmeSettings(validation=checks),
        clock=clock,
    )
    account = await new_account(service)
    for ip in ("127.0.0.1", "169.254.169.254", "::1", "10.0.0.7"):
        if ip in refused:
            with pytest.raises(EngineError) as err:
                await service.orders.new_order(account, [("ip", ip)])
            assert err.value.kind is ProblemKind.REJECTED_IDENTIFIER
            assert [s.identifier for s in err.value.subproblems] == [f"ip:{ip}"]
            assert "not a permitted validation target" in err.value.detail
        else:
            order = await service.orders.new_order(account, [("ip", ip)])
            assert order.identifiers[0].value == ip
    await service.close()
