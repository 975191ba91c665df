"""The bad-request corpus: every malformed or unauthorised request gets its ACME error.

Each case asserts the status, the problem type, application/problem+json, a
fresh Replay-Nonce, and that nothing was stored (accounts, orders, authorizations,
certificates).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient, Reply, b64u, dumps, jws

Case = Callable[[AcmeClient], Awaitable[Reply]]


async def count_rows(env: AcmeEnv) -> dict[str, int]:
    out = {}
    async with env.db.engine.connect() as conn:
        for table in ("acme_accounts", "acme_orders", "acme_authzs", "certificates"):
            out[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608 - fixed table names
    return out


def order_payload(*names: str) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": n} for n in names]}


async def signed(c: AcmeClient, *, url: str | None = None, payload: Any = None, **kw: Any) -> Reply:
    nonce = await c.new_nonce()
    target = url or c.dir["newOrder"]
    body = jws(
        c.key,
        payload if payload is not None else order_payload("x.internal"),
        url=target,
        nonce=nonce,
        kid=c.kid,
        **kw,
    )
    return await c.send(target, body)


async def with_body(c: AcmeClient, mutate: Callable[[dict[str, Any]], Any]) -> Reply:
    nonce = await c.new_nonce()
    body: Any = jws(
        c.key, order_payload("x.internal"), url=c.dir["newOrder"], nonce=nonce, kid=c.kid
    )
    body = mutate(body) or body
    return await c.send(c.dir["newOrder"], body if isinstance(body, (bytes, dict)) else dumps(body))


def _protected(c: AcmeClient, header: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    def mutate(body: dict[str, Any]) -> None:
        body["protected"] = b64u(dumps(header))

    return mutate


async def replayed(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    body = jws(c.key, order_payload("a.internal"), url=c.dir["newOrder"], nonce=nonce, kid=c.kid)
    first = await c.send(c.dir["newOrder"], body)
    assert first.status == 201
    body = jws(c.key, order_payload("b.internal"), url=c.dir["newOrder"], nonce=nonce, kid=c.kid)
    return await c.send(c.dir["newOrder"], body)


async def forged_nonce(c: AcmeClient) -> Reply:
    return await signed(c, extra={"nonce": b64u(b"\x00" * 32)})


async def missing_nonce(c: AcmeClient) -> Reply:
    body = jws(c.key, order_payload("x.internal"), url=c.dir["newOrder"], nonce=None, kid=c.kid)
    return await c.send(c.dir["newOrder"], body)


async def unknown_kid(c: AcmeClient) -> Reply:
    assert c.kid is not None
    nonce = await c.new_nonce()
    kid = c.kid.rsplit("/", 1)[0] + "/doesnotexist"
    body = jws(c.key, order_payload("x.internal"), url=c.dir["newOrder"], nonce=nonce, kid=kid)
    return await c.send(c.dir["newOrder"], body)


async def foreign_kid(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    body = jws(
        c.key,
        order_payload("x.internal"),
        url=c.dir["newOrder"],
        nonce=nonce,
        kid="https://elsewhere.example/acme/acct/1",
    )
    return await c.send(c.dir["newOrder"], body)


async def other_key_for_kid(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    other = ec.generate_private_key(ec.SECP256R1())
    body = jws(other, order_payload("x.internal"), url=c.dir["newOrder"], nonce=nonce, kid=c.kid)
    return await c.send(c.dir["newOrder"], body)


async def jwk_on_kid_endpoint(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    body = jws(c.key, order_payload("x.internal"), url=c.dir["newOrder"], nonce=nonce)
    return await c.send(c.dir["newOrder"], body)


async def kid_on_new_account(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    other = ec.generate_private_key(ec.SECP256R1())
    body = jws(
        other, {"termsOfServiceAgreed": True}, url=c.dir["newAccount"], nonce=nonce, kid=c.kid
    )
    return await c.send(c.dir["newAccount"], body)


async def both_jwk_and_kid(c: AcmeClient) -> Reply:
    from tests.protocols.acme.support import jwk_of

    return await signed(c, extra={"jwk": jwk_of(c.key)})


async def bad_signature(c: AcmeClient) -> Reply:
    def mutate(body: dict[str, Any]) -> None:
        sig = bytearray(b"\x01" * 64)
        body["signature"] = b64u(bytes(sig))

    return await with_body(c, mutate)


async def wrong_content_type(c: AcmeClient) -> Reply:
    nonce = await c.new_nonce()
    body = jws(c.key, order_payload("x.internal"), url=c.dir["newOrder"], nonce=nonce, kid=c.kid)
    return await c.send(c.dir["newOrder"], body, content_type="application/json")


async def oversized(c: AcmeClient) -> Reply:
    return await c.send(c.dir["newOrder"], b"{" + b" " * (200 * 1024) + b"}")


async def payload_not_json(c: AcmeClient) -> Reply:
    return await signed(c, payload=b"not json")


async def order_outside_policy(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("ok.internal", "www.example.com"))


async def order_unsupported_type(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": [{"type": "email", "value": "a@b.internal"}]})


async def order_bad_ip(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": [{"type": "ip", "value": "10.0.0.300"}]})


async def order_unknown_profile(c: AcmeClient) -> Reply:
    return await signed(c, payload={**order_payload("p.internal"), "profile": "nope"})


async def order_too_long(c: AcmeClient) -> Reply:
    return await signed(
        c,
        payload={
            **order_payload("p.internal"),
            "profile": "shortlived",
            "notAfter": "2099-01-01T00:00:00Z",
        },
    )


async def order_bad_time(c: AcmeClient) -> Reply:
    return await signed(c, payload={**order_payload("p.internal"), "notAfter": "tomorrow"})


async def order_no_identifiers(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": []})


async def order_uppercase(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("UPPER.internal"))


async def wildcard_ip(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("bad_label.internal"))


async def deeply_nested(c: AcmeClient) -> Reply:
    return await signed(c, payload=b"[" * 20000 + b"]" * 20000)


async def order_idn(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("\u00e9t\u00e9.internal"))


async def order_long_name(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("a" * 300 + ".internal"))


async def order_ip_in_dns(c: AcmeClient) -> Reply:
    return await signed(c, payload=order_payload("10.0.0.1"))


async def order_mapped_ip(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": [{"type": "ip", "value": "::FFFF:10.0.0.1"}]})


async def order_wildcard_ip(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": [{"type": "ip", "value": "*.10.0.0.1"}]})


async def order_identifier_not_object(c: AcmeClient) -> Reply:
    return await signed(c, payload={"identifiers": ["x.internal"]})


async def new_account_bad_jwk(c: AcmeClient) -> Reply:
    from tests.protocols.acme.support import jwk_of

    jwk: dict[str, Any] = dict(jwk_of(c.key))
    jwk["crv"] = ["P-256"]
    nonce = await c.new_nonce()
    return await c.send(
        c.dir["newAccount"],
        jws(c.key, {}, url=c.dir["newAccount"], nonce=nonce, extra={"jwk": jwk}),
    )


async def key_change_not_json(c: AcmeClient) -> Reply:
    return await signed(
        c, url=c.dir["keyChange"], payload={"protected": "e30", "payload": "eA", "signature": "AA"}
    )


CASES: list[Any] = [
    pytest.param(
        lambda c: c.send(c.dir["newOrder"], b"{not json"),
        400,
        "malformed",
        id="fail/malformed-json",
    ),
    pytest.param(
        lambda c: c.send(c.dir["newOrder"], b"[]"), 400, "malformed", id="fail/json-array"
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: b.update(protected="!!!")),
        400,
        "malformed",
        id="fail/bad-base64-protected",
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: b.update(payload=b["payload"] + "=")),
        400,
        "malformed",
        id="fail/padded-base64-payload",
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: b.update(signature="a+b/")),
        400,
        "malformed",
        id="fail/bad-base64-signature",
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: b.update(header={"kid": "x"})),
        400,
        "malformed",
        id="fail/unprotected-header",
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: {"payload": b["payload"], "signatures": [b]}),
        400,
        "malformed",
        id="fail/general-serialization",
    ),
    pytest.param(
        lambda c: with_body(c, lambda b: b.pop("signature")),
        400,
        "malformed",
        id="fail/missing-signature",
    ),
    pytest.param(
        lambda c: signed(c, extra={"url": c.dir["newAuthz"]}),
        403,
        "unauthorized",
        id="fail/wrong-url",
    ),
    pytest.param(lambda c: signed(c, extra={"url": None}), 400, "malformed", id="fail/no-url"),
    pytest.param(replayed, 400, "badNonce", id="fail/replayed-nonce"),
    pytest.param(forged_nonce, 400, "badNonce", id="fail/unknown-nonce"),
    pytest.param(missing_nonce, 400, "badNonce", id="fail/missing-nonce"),
    pytest.param(unknown_kid, 400, "accountDoesNotExist", id="fail/unknown-kid"),
    pytest.param(foreign_kid, 400, "accountDoesNotExist", id="fail/foreign-kid"),
    pytest.param(other_key_for_kid, 400, "malformed", id="fail/signed-by-other-key"),
    pytest.param(lambda c: signed(c, alg="none"), 400, "badSignatureAlgorithm", id="fail/alg-none"),
    pytest.param(lambda c: signed(c, alg="HS256"), 400, "badSignatureAlgorithm", id="fail/alg-mac"),
    pytest.param(
        lambda c: signed(c, alg="ES384"), 400, "badSignatureAlgorithm", id="fail/alg-key-mismatch"
    ),
    pytest.param(
        lambda c: signed(c, alg="PS256"), 400, "badSignatureAlgorithm", id="fail/alg-unsupported"
    ),
    pytest.param(bad_signature, 400, "malformed", id="fail/bad-signature"),
    pytest.param(both_jwk_and_kid, 400, "malformed", id="fail/jwk-and-kid"),
    pytest.param(jwk_on_kid_endpoint, 400, "malformed", id="fail/jwk-on-kid-endpoint"),
    pytest.param(kid_on_new_account, 400, "malformed", id="fail/kid-on-new-account"),
    pytest.param(
        lambda c: signed(c, extra={"crit": ["exp"], "exp": 1}),
        400,
        "malformed",
        id="fail/crit-header",
    ),
    pytest.param(lambda c: signed(c, extra={"b64": False}), 400, "malformed", id="fail/b64-false"),
    pytest.param(wrong_content_type, 415, "malformed", id="fail/wrong-content-type"),
    pytest.param(oversized, 413, "malformed", id="fail/oversized-body"),
    pytest.param(payload_not_json, 400, "malformed", id="fail/payload-not-json"),
    pytest.param(order_outside_policy, 400, "rejectedIdentifier", id="fail/name-outside-policy"),
    pytest.param(
        order_unsupported_type, 400, "unsupportedIdentifier", id="fail/unsupported-identifier"
    ),
    pytest.param(order_bad_ip, 400, "malformed", id="fail/bad-ip-identifier"),
    pytest.param(order_unknown_profile, 400, "invalidProfile", id="fail/unknown-profile"),
    pytest.param(order_too_long, 400, "malformed", id="fail/validity-beyond-profile"),
    pytest.param(order_bad_time, 400, "malformed", id="fail/bad-timestamp"),
    pytest.param(order_no_identifiers, 400, "malformed", id="fail/no-identifiers"),
    pytest.param(order_uppercase, 400, "rejectedIdentifier", id="fail/uppercase-name"),
    pytest.param(wildcard_ip, 400, "rejectedIdentifier", id="fail/invalid-dns-label"),
    pytest.param(deeply_nested, 400, "malformed", id="fail/deeply-nested-json"),
    pytest.param(new_account_bad_jwk, 400, "badPublicKey", id="fail/jwk-curve-not-string"),
    pytest.param(key_change_not_json, 400, "malformed", id="fail/key-change-inner-not-jws"),
    pytest.param(order_idn, 400, "rejectedIdentifier", id="fail/unicode-name"),
    pytest.param(order_long_name, 400, "rejectedIdentifier", id="fail/overlong-name"),
    pytest.param(order_ip_in_dns, 400, "rejectedIdentifier", id="fail/ip-as-dns-name"),
    pytest.param(order_mapped_ip, 400, "malformed", id="fail/non-canonical-ip"),
    pytest.param(order_wildcard_ip, 400, "malformed", id="fail/wildcard-ip"),
    pytest.param(order_identifier_not_object, 400, "malformed", id="fail/identifier-not-object"),
    pytest.param(
        lambda c: c.send(c.dir["newOrder"].replace("new-order", "nowhere"), b"{}"),
        404,
        "malformed",
        id="fail/unknown-path",
    ),
]


@pytest.mark.parametrize(("make", "status", "problem"), CASES)
async def test_bad_request_gets_acme_error_and_stores_nothing(
    acme_env: AcmeEnv, acme: AcmeClient, make: Case, status: int, problem: str
) -> None:
    before = await count_rows(acme_env)
    reply = await make(acme)
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body = reply.json()
    assert body["type"] == "urn:ietf:params:acme:error:" + problem, body
    assert body["status"] == status
    assert reply.headers.get("Replay-Nonce")
    after = await count_rows(acme_env)
    if problem == "badNonce" and before != after:
        # The replay case stores its first (good) order; the refused second one adds nothing.
        assert after["acme_orders"] == before["acme_orders"] + 1
    else:
        assert after == before
    if problem == "badSignatureAlgorithm":
        assert "ES256" in body["algorithms"]


async def test_rejected_identifier_names_each_refused_identifier(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    reply = await order_outside_policy(acme)
    subs = reply.json()["subproblems"]
    assert [s["identifier"] for s in subs] == [{"type": "dns", "value": "www.example.com"}]
    assert subs[0]["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"


async def test_get_on_post_endpoint_is_405_problem(acme_env: AcmeEnv) -> None:
    resp = await acme_env.http.get("/acme/new-order")
    assert resp.status == 405
    body = json.loads(await resp.read())
    assert body["type"] == "urn:ietf:params:acme:error:malformed"
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_post_as_get_required_for_orders(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    order = await acme.new_order("pag.internal")
    reply = await acme.post(order.headers["Location"], {})
    assert reply.status == 400
    assert reply.problem_type == "malformed"


WEIRD_PAYLOADS: list[Any] = [
    [],
    1,
    "x",
    None,
    True,
    {"identifiers": 1},
    {"identifiers": [{"type": 1, "value": []}]},
    {"identifiers": [{"type": "dns", "value": "a.internal"}], "notBefore": 5},
    {"identifiers": [{"type": "dns", "value": "a.internal"}], "profile": ["x"]},
    {"identifier": "x"},
    {"csr": 1},
    {"csr": "AAAA"},
    {"certificate": {}},
    {"certificate": "AAAA", "reason": 99},
    {"contact": [1]},
    {"contact": ["mailto:\u00e9@\u00e9.internal"]},
    {"status": []},
    {"status": "deactivated", "contact": "x"},
    {"externalAccountBinding": "x"},
    {"externalAccountBinding": {"protected": "e30", "payload": "", "signature": "AA"}},
    {"protected": 1, "payload": 2, "signature": 3},
]


async def test_no_payload_on_any_endpoint_gets_a_500(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    order = await acme.new_order("any.internal")
    authz_url = order.json()["authorizations"][0]
    assert acme.kid is not None
    urls = [
        acme.dir["newAccount"],
        acme.dir["newOrder"],
        acme.dir["newAuthz"],
        acme.dir["revokeCert"],
        acme.dir["keyChange"],
        acme.kid,
        acme.kid + "/orders",
        order.headers["Location"],
        order.json()["finalize"],
        authz_url,
        authz_url.replace("/authz/", "/chall/") + "/http-01",
        authz_url.replace("/authz/", "/cert/"),
    ]
    for url in urls:
        for payload in WEIRD_PAYLOADS:
            body = payload if payload is not None else b"null"
            reply = await acme.post(url, body, use_jwk=url == acme.dir["newAccount"])
            assert reply.status < 500, (url, payload, reply.body)
            if reply.status >= 400:
                assert reply.headers["Content-Type"].startswith("application/problem+json")
