"""Directory, nonces and accounts: newAccount, update, deactivate, key rollover, EAB."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from server.ca.acme import api as acme_api
from tests.protocols.acme.conftest import OP, AcmeEnv
from tests.protocols.acme.support import AcmeClient, Reply, eab_binding, jwk_of, jws


async def test_directory_lists_every_endpoint(acme_env: AcmeEnv) -> None:
    resp = await acme_env.http.get("/acme/directory")
    assert resp.status == 200
    body = await resp.json()
    for key in (
        "newNonce",
        "newAccount",
        "newOrder",
        "newAuthz",
        "revokeCert",
        "keyChange",
        "renewalInfo",
    ):
        assert body[key].startswith("http://127.0.0.1:")
    assert body["meta"]["externalAccountRequired"] is False
    assert "shortlived" in body["meta"]["profiles"]


@pytest.mark.parametrize(
    ("method", "status"), [("HEAD", 200), ("GET", 204)], ids=["ok/head", "ok/get"]
)
async def test_new_nonce(acme_env: AcmeEnv, method: str, status: int) -> None:
    resp = await acme_env.http.request(method, "/acme/new-nonce")
    assert resp.status == status
    assert resp.headers["Cache-Control"] == "no-store"
    assert len(resp.headers["Replay-Nonce"]) >= 22
    assert 'rel="index"' in resp.headers["Link"]


KEYS: list[Any] = [
    pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="ok/rs256"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ok/es256"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ok/es384"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), id="ok/es512"),
    pytest.param(ed25519.Ed25519PrivateKey.generate, id="ok/eddsa"),
]


@pytest.mark.parametrize("make_key", KEYS)
async def test_new_account_with_each_algorithm(acme_env: AcmeEnv, make_key: Any) -> None:
    client = acme_env.client(make_key())
    reply = await client.new_account(contact=["mailto:a@example.internal"])
    assert reply.status == 201, reply.body
    assert reply.headers["Location"].startswith("http://127.0.0.1:")
    body = reply.json()
    assert body["status"] == "valid"
    assert body["contact"] == ["mailto:a@example.internal"]
    assert body["orders"].endswith("/orders")
    # Same key again: the existing account, 200.
    again = await client.new_account()
    assert again.status == 200
    assert again.headers["Location"] == reply.headers["Location"]
    # And it can place an order with kid.
    assert (await client.new_order("alg.internal")).status == 201


async def test_weak_rsa_key_is_bad_public_key(acme_env: AcmeEnv) -> None:
    client = acme_env.client(rsa.generate_private_key(65537, 1024))  # noqa: S505 - the weak key under test
    reply = await client.new_account()
    assert reply.status == 400
    assert reply.problem_type == "badPublicKey"


async def test_only_return_existing(acme_env: AcmeEnv) -> None:
    client = acme_env.client()
    reply = await client.new_account(onlyReturnExisting=True)
    assert reply.status == 400
    assert reply.problem_type == "accountDoesNotExist"
    assert await acme_env.repo.get_account_by_thumbprint("x") is None
    assert (await client.new_account()).status == 201
    assert (await client.new_account(onlyReturnExisting=True)).status == 200


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        pytest.param(["tel:+1555"], "unsupportedContact", id="fail/tel"),
        pytest.param(["mailto:nobody"], "invalidContact", id="fail/no-at"),
        pytest.param(["mailto:a@b.internal?subject=x"], "invalidContact", id="fail/hfields"),
        pytest.param(["mailto:a@exa mple.internal"], "invalidContact", id="fail/space"),
        pytest.param("mailto:a@b.internal", "malformed", id="fail/not-a-list"),
    ],
)
async def test_bad_contact_is_refused_and_no_account_stored(
    acme_env: AcmeEnv, contact: Any, problem: str
) -> None:
    client = acme_env.client()
    reply = await client.new_account(contact=contact)
    assert reply.status == 400
    assert reply.problem_type == problem
    assert (await client.new_account(onlyReturnExisting=True)).problem_type == "accountDoesNotExist"


async def test_update_contact_and_deactivate(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    assert acme.kid is not None
    reply = await acme.post(acme.kid, {"contact": ["mailto:new@example.internal"]})
    assert reply.status == 200
    assert reply.json()["contact"] == ["mailto:new@example.internal"]
    fetched = await acme.get(acme.kid)
    assert fetched.json()["contact"] == ["mailto:new@example.internal"]
    bad = await acme.post(acme.kid, {"status": "revoked"})
    assert bad.problem_type == "malformed"
    gone = await acme.post(acme.kid, {"status": "deactivated"})
    assert gone.json()["status"] == "deactivated"
    # RFC 8555 §7.3.6: every later request from the account is 401 unauthorized.
    after = await acme.new_order("after.internal")
    assert after.status == 401
    assert after.problem_type == "unauthorized"
    fetched_after = await acme.get(acme.kid)
    assert fetched_after.status == 401
    assert fetched_after.problem_type == "unauthorized"
    again = await acme.new_account()
    assert again.status == 401
    assert again.problem_type == "unauthorized"


async def test_account_url_of_another_account_is_unauthorized(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    other = acme_env.client()
    await other.new_account()
    assert acme.kid is not None
    reply = await other.get(acme.kid)
    assert reply.status == 403
    assert reply.problem_type == "unauthorized"


async def test_orders_list(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    a = await acme.new_order("one.internal")
    b = await acme.new_order("two.internal")
    assert acme.kid is not None
    listed = (await acme.get(acme.kid + "/orders")).json()["orders"]
    assert set(listed) == {a.headers["Location"], b.headers["Location"]}


def key_change_body(
    client: AcmeClient,
    new_key: Any,
    url: str,
    *,
    old_jwk: Any = None,
    account: str | None = None,
    inner_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    inner = jws(
        new_key,
        {"account": account or client.kid, "oldKey": old_jwk or jwk_of(client.key)},
        url=url,
        nonce=None,
        extra=inner_extra,
    )
    return inner


async def test_key_rollover(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    url = acme.dir["keyChange"]
    new_key = ec.generate_private_key(ec.SECP256R1())
    reply = await acme.post(url, key_change_body(acme, new_key, url))
    assert reply.status == 200, reply.body
    old_key = acme.key
    acme.key = new_key
    assert (await acme.new_order("rolled.internal")).status == 201
    acme.key = old_key
    refused = await acme.new_order("old.internal")
    assert refused.problem_type == "malformed"  # signature by the old key no longer verifies


@pytest.mark.parametrize(
    "variant",
    [
        "fail/wrong-account",
        "fail/wrong-old-key",
        "fail/inner-nonce",
        "fail/inner-url",
        "fail/same-key",
    ],
)
async def test_key_rollover_nested_checks(
    acme_env: AcmeEnv, acme: AcmeClient, variant: str
) -> None:
    url = acme.dir["keyChange"]
    new_key = ec.generate_private_key(ec.SECP256R1())
    kwargs: dict[str, Any] = {}
    if variant == "fail/wrong-account":
        kwargs["account"] = "http://127.0.0.1/acme/acct/else"
    elif variant == "fail/wrong-old-key":
        kwargs["old_jwk"] = jwk_of(ec.generate_private_key(ec.SECP256R1()))
    elif variant == "fail/inner-nonce":
        kwargs["inner_extra"] = {"nonce": "abc"}
    elif variant == "fail/inner-url":
        kwargs["inner_extra"] = {"url": acme.dir["newOrder"]}
    else:
        new_key = acme.key  # type: ignore[assignment]
    reply = await acme.post(url, key_change_body(acme, new_key, url, **kwargs))
    assert reply.status == 400
    assert reply.problem_type == "malformed"
    assert acme.kid is not None
    account = await acme_env.registration.accounts.account(acme.kid.rsplit("/", 1)[1])
    assert account.key.jwk.count("P-256") == 1  # key unchanged


async def test_key_rollover_to_a_key_in_use_is_409_with_location(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    other = acme_env.client()
    await other.new_account()
    url = acme.dir["keyChange"]
    reply = await acme.post(url, key_change_body(acme, other.key, url))
    assert reply.status == 409
    assert reply.headers["Location"] == other.kid


async def sign_up(acme_env: AcmeEnv, key: acme_api.EabKey) -> tuple[AcmeClient, Reply]:
    """Open an account bound with ``key`` from a fresh client key."""
    client = acme_env.client()
    await client.directory()
    binding = eab_binding(key.kid, key.hmac_key, jwk_of(client.key), client.dir["newAccount"])
    return client, await client.new_account(externalAccountBinding=binding)


class TestEab:
    @pytest.fixture
    def acme_settings(self) -> acme_api.AcmeSettings:
        return acme_api.AcmeSettings(eab_required=True)

    async def test_directory_says_required(self, acme_env: AcmeEnv) -> None:
        body = await (await acme_env.http.get("/acme/directory")).json()
        assert body["meta"]["externalAccountRequired"] is True

    async def test_account_without_eab_is_refused(self, acme_env: AcmeEnv) -> None:
        reply = await acme_env.client().new_account()
        assert reply.status == 400
        assert reply.problem_type == "externalAccountRequired"

    async def test_account_with_eab(self, acme_env: AcmeEnv) -> None:
        key = await acme_env.registration.accounts.create_eab_key(actor=OP)
        client = acme_env.client()
        await client.directory()
        binding = eab_binding(key.kid, key.hmac_key, jwk_of(client.key), client.dir["newAccount"])
        reply = await client.new_account(externalAccountBinding=binding)
        assert reply.status == 201, reply.body
        listed = await acme_env.registration.accounts.list_eab_keys()
        assert listed[0].account_ids == (reply.headers["Location"].rsplit("/", 1)[1],)

    async def test_a_key_admits_one_account(self, acme_env: AcmeEnv) -> None:
        accounts = acme_env.registration.accounts
        key = await accounts.create_eab_key(actor=OP)
        _, first = await sign_up(acme_env, key)
        assert first.status == 201
        # Issue 13: a second account with the same key was admitted.
        second, reused = await sign_up(acme_env, key)
        assert reused.status == 403
        assert reused.problem_type == "unauthorized"
        assert (
            await second.new_account(onlyReturnExisting=True)
        ).problem_type == "accountDoesNotExist"
        (listed,) = await accounts.list_eab_keys()
        assert len(listed.account_ids) == 1

    async def test_racing_sign_ups_bind_a_key_once(self, acme_env: AcmeEnv) -> None:
        key = await acme_env.registration.accounts.create_eab_key(actor=OP)
        replies = await asyncio.gather(*(sign_up(acme_env, key) for _ in range(4)))
        assert sorted(r.status for _, r in replies) == [201, 403, 403, 403]

    async def test_revocation_can_deactivate_bound_accounts(self, acme_env: AcmeEnv) -> None:
        accounts = acme_env.registration.accounts
        kept_key = await accounts.create_eab_key(actor=OP)
        gone_key = await accounts.create_eab_key(actor=OP)
        kept, _ = await sign_up(acme_env, kept_key)
        gone, _ = await sign_up(acme_env, gone_key)
        revoked = gone_key.kid
        assert await accounts.revoke_eab_key(kept_key.kid, actor=OP) == []
        done = await accounts.revoke_eab_key(revoked, actor=OP, deactivate_accounts=True)
        assert gone.kid is not None
        assert done == [gone.kid.rsplit("/", 1)[1]]
        refused = await gone.new_order("eab.internal")
        assert refused.status == 401
        assert refused.problem_type == "unauthorized"
        # Revoking without --deactivate-accounts leaves the bound account working.
        assert (await kept.new_order("eab.internal")).status == 201
        trail = [
            (e.action, e.target)
            for e in await acme_env.engine.audit_log(limit=20)
            if e.action.startswith("acme.eab")
        ]
        for kid in (kept_key.kid, revoked):
            assert ("acme.eab-create", kid) in trail
            assert ("acme.eab-bind", kid) in trail
            assert ("acme.eab-revoke", kid) in trail


class TestEabReuse:
    @pytest.fixture
    def acme_settings(self) -> acme_api.AcmeSettings:
        return acme_api.AcmeSettings(eab_required=True, eab_reuse=True)

    async def test_reuse_admits_and_records_every_account(self, acme_env: AcmeEnv) -> None:
        accounts = acme_env.registration.accounts
        key = await accounts.create_eab_key(actor=OP)
        ids = []
        for _ in range(3):
            client, reply = await sign_up(acme_env, key)
            assert reply.status == 201
            assert client.kid is not None
            ids.append(client.kid.rsplit("/", 1)[1])
        (listed,) = await accounts.list_eab_keys()
        assert listed.account_ids == tuple(sorted(ids))
        done = await accounts.revoke_eab_key(key.kid, actor=OP, deactivate_accounts=True)
        assert sorted(done) == sorted(ids)

    @pytest.mark.parametrize(
        "variant",
        ["fail/wrong-mac", "fail/revoked", "fail/unknown-kid", "fail/other-jwk", "fail/wrong-url"],
    )
    async def test_bad_eab_is_refused(self, acme_env: AcmeEnv, variant: str) -> None:
        key = await acme_env.registration.accounts.create_eab_key(actor=OP)
        client = acme_env.client()
        await client.directory()
        hmac_key, kid, jwk = key.hmac_key, key.kid, jwk_of(client.key)
        url = client.dir["newAccount"]
        if variant == "fail/wrong-mac":
            hmac_key = b"x" * 32
        elif variant == "fail/revoked":
            await acme_env.registration.accounts.revoke_eab_key(kid, actor=OP)
        elif variant == "fail/unknown-kid":
            kid = "nope"
        elif variant == "fail/other-jwk":
            jwk = jwk_of(ec.generate_private_key(ec.SECP256R1()))
        else:
            url = client.dir["newOrder"]
        reply = await client.new_account(
            externalAccountBinding=eab_binding(kid, hmac_key, jwk, url)
        )
        expected = (
            "unauthorized"
            if variant in ("fail/wrong-mac", "fail/revoked", "fail/unknown-kid")
            else "malformed"
        )
        assert reply.problem_type == expected, reply.body
        assert (
            await client.new_account(onlyReturnExisting=True)
        ).problem_type == "accountDoesNotExist"
