"""ACME accounts (RFC 8555 §7.3): creation, contacts, EAB, key change, deactivation."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from server.ca.acme import types as at
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.errors import EngineError, ProblemKind
from server.store.memory import MemoryAcmeRepository
from tests.server.ca.acme.conftest import OP
from tests.server.ca.acme.support import account_key, new_account


async def test_new_account_is_created_once_per_key(
    service: AcmeService, acme_repo: MemoryAcmeRepository
) -> None:
    first, created = await service.accounts.new_account(
        account_key("a"), contact=["mailto:ops@corp.internal"]
    )
    again, created_again = await service.accounts.new_account(account_key("a"))
    assert created
    assert not created_again
    assert again == first
    assert list(acme_repo.accounts) == [first.id]
    assert first.contact == ("mailto:ops@corp.internal",)
    assert await service.account(first.id) == first


async def test_only_return_existing_creates_nothing(
    service: AcmeService, acme_repo: MemoryAcmeRepository
) -> None:
    with pytest.raises(EngineError) as err:
        await service.accounts.new_account(account_key("a"), only_return_existing=True)
    assert err.value.kind is ProblemKind.ACCOUNT_DOES_NOT_EXIST
    assert acme_repo.accounts == {}


@pytest.mark.parametrize(
    ("contact", "kind"),
    [
        pytest.param(["tel:+1555"], ProblemKind.UNSUPPORTED_CONTACT, id="fail/not-mailto"),
        pytest.param(["mailto:a@b@corp.internal"], ProblemKind.INVALID_CONTACT, id="fail/two-at"),
        pytest.param(["mailto:@corp.internal"], ProblemKind.INVALID_CONTACT, id="fail/no-local"),
        pytest.param(
            ["mailto:a@corp.internal?x=1"], ProblemKind.INVALID_CONTACT, id="fail/hfields"
        ),
        pytest.param(["mailto:a@-bad-"], ProblemKind.INVALID_CONTACT, id="fail/bad-domain"),
        pytest.param(
            [f"mailto:a{i}@corp.internal" for i in range(11)],
            ProblemKind.INVALID_CONTACT,
            id="fail/too-many",
        ),
    ],
)
async def test_bad_contacts_are_refused(
    service: AcmeService, contact: list[str], kind: ProblemKind
) -> None:
    with pytest.raises(EngineError) as err:
        await service.accounts.new_account(account_key("a"), contact=contact)
    assert err.value.kind is kind
    account = await new_account(service)
    with pytest.raises(EngineError) as update_err:
        await service.accounts.update_account(account, contact=contact, deactivate=False)
    assert update_err.value.kind is kind


async def test_contacts_update_and_deactivation(service: AcmeService) -> None:
    account = await new_account(service)
    updated = await service.accounts.update_account(
        account, contact=["mailto:new@corp.internal"], deactivate=False
    )
    assert updated.contact == ("mailto:new@corp.internal",)
    gone = await service.accounts.update_account(updated, contact=None, deactivate=True)
    assert gone.status is at.AccountStatus.DEACTIVATED
    with pytest.raises(EngineError) as err:
        await service.account(account.id)
    assert err.value.kind is ProblemKind.ACCOUNT_NOT_VALID
    with pytest.raises(EngineError) as again:
        await service.accounts.new_account(account.key)
    assert again.value.kind is ProblemKind.ACCOUNT_NOT_VALID


async def test_unknown_account_id(service: AcmeService) -> None:
    with pytest.raises(EngineError) as err:
        await service.account("nope")
    assert err.value.kind is ProblemKind.ACCOUNT_DOES_NOT_EXIST


async def test_change_key_refuses_a_key_held_by_another_account(service: AcmeService) -> None:
    alice = await new_account(service, "alice")
    bob = await new_account(service, "bob")
    with pytest.raises(EngineError) as err:
        await service.accounts.change_key(alice, bob.key)
    assert err.value.kind is ProblemKind.CONFLICT
    moved = await service.accounts.change_key(alice, account_key("alice-2"))
    assert await service.accounts.find_account("thumb-alice-2") == moved
    assert await service.accounts.find_account("thumb-alice") is None


def _binding(key: at.EabKey, signing_input: bytes = b"inner") -> at.EabBinding:
    mac = hmac.new(key.hmac_key, signing_input, hashlib.sha256).digest()
    return at.EabBinding(kid=key.kid, signing_input=signing_input, signature=mac)


class TestExternalAccountBinding:
    @pytest.fixture
    def acme_settings(self) -> AcmeSettings:
        return AcmeSettings(eab_required=True)

    async def test_required_binding(self, service: AcmeService) -> None:
        with pytest.raises(EngineError) as err:
            await service.accounts.new_account(account_key("a"))
        assert err.value.kind is ProblemKind.EXTERNAL_ACCOUNT_REQUIRED

    async def test_binding_admits_and_is_listed(self, service: AcmeService) -> None:
        key = await service.accounts.create_eab_key(actor=OP)
        account, created = await service.accounts.new_account(account_key("a"), eab=_binding(key))
        assert created
        assert account.eab_kid == key.kid
        (listed,) = await service.accounts.list_eab_keys()
        assert listed.kid == key.kid
        assert listed.account_ids == (account.id,)

    @pytest.mark.parametrize(
        "mutate",
        [
            pytest.param("mac", id="fail/wrong-mac"),
            pytest.param("kid", id="fail/unknown-kid"),
            pytest.param("revoked", id="fail/revoked-key"),
        ],
    )
    async def test_bad_bindings_are_refused(self, service: AcmeService, mutate: str) -> None:
        key = await service.accounts.create_eab_key(actor=OP)
        binding = _binding(key)
        if mutate == "mac":
            binding = replace(binding, signature=bytes(32))
        elif mutate == "kid":
            binding = replace(binding, kid="unknown")
        else:
            await service.accounts.revoke_eab_key(key.kid, actor=OP)
        with pytest.raises(EngineError) as err:
            await service.accounts.new_account(account_key("a"), eab=binding)
        assert err.value.kind is ProblemKind.UNAUTHORIZED

    async def test_revoking_an_unknown_key(self, service: AcmeService) -> None:
        with pytest.raises(EngineError) as err:
            await service.accounts.revoke_eab_key("unknown", actor=OP)
        assert err.value.kind is ProblemKind.NOT_FOUND


class TestTermsAndLimits:
    @pytest.fixture
    def acme_settings(self) -> AcmeSettings:
        return AcmeSettings(
            terms_of_service="https://corp.internal/tos", accounts_per_ip_per_hour=2
        )

    async def test_terms_must_be_agreed(self, service: AcmeService) -> None:
        with pytest.raises(EngineError) as err:
            await service.accounts.new_account(account_key("a"))
        assert err.value.kind is ProblemKind.MALFORMED
        account, _ = await service.accounts.new_account(account_key("a"), tos_agreed=True)
        assert account.tos_agreed

    async def test_accounts_per_address_are_limited(self, service: AcmeService) -> None:
        for name in ("a", "b"):
            await service.accounts.new_account(
                account_key(name), tos_agreed=True, client="10.1.1.1"
            )
        with pytest.raises(EngineError) as err:
            await service.accounts.new_account(account_key("c"), tos_agreed=True, client="10.1.1.1")
        assert err.value.kind is ProblemKind.RATE_LIMITED
        assert err.value.retry_after is not None
        assert 0 < err.value.retry_after <= 3601
        _, created = await service.accounts.new_account(
            account_key("c"), tos_agreed=True, client="10.2.2.2"
        )
        assert created
