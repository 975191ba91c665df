"""ACME (RFC 8555) through the real app: JWS envelopes and payloads never answer 5xx.

Envelopes are damaged before the signature check (bytes, JSON, protected headers);
payloads are signed correctly with a fresh nonce, so they reach each handler's parser.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.conftest import Stack
from tests.protocols.acme.support import AcmeClient, b64u, jwk_of

_PATHS: Final = [
    "/acme/new-account",
    "/acme/new-order",
    "/acme/revoke-cert",
    "/acme/key-change",
    "/acme/renewal-info",
    "/acme/acct/1",
    "/acme/order/1",
    "/acme/order/1/finalize",
    "/acme/authz/1",
    "/acme/chall/1",
    "/acme/cert/1",
    "/acme/nope",
]
_JSON: Final = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_ALGS: Final = st.sampled_from(["ES256", "RS256", "EdDSA", "none", "HS256", "ES512", "", "PS256"])


def _b64_json(value: Any) -> str:
    return b64u(json.dumps(value).encode())


@st.composite
def envelopes(draw: st.DrawFn, url: str, nonce: str, jwk: dict[str, str]) -> bytes:
    """Draw a request body: raw bytes, arbitrary JSON, or a flattened JWS with odd fields."""
    kind = draw(st.sampled_from(["bytes", "json", "jws", "jws", "jws"]))
    if kind == "bytes":
        return draw(st.binary(max_size=1024))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    protected: dict[str, Any] = {"alg": draw(_ALGS), "url": url, "nonce": nonce}
    if draw(st.booleans()):
        protected["jwk"] = jwk
    else:
        protected["kid"] = draw(st.sampled_from([url, "", "http://x/acme/acct/99"]))
    for key in draw(
        st.lists(st.sampled_from(["alg", "url", "nonce", "jwk", "kid", "b64", "crit"]), max_size=3)
    ):
        if draw(st.booleans()):
            protected.pop(key, None)
        else:
            protected[key] = draw(_JSON)
    fields: dict[str, Any] = {
        "protected": draw(
            st.sampled_from([_b64_json(protected), b64u(draw(st.binary(max_size=64)))])
        ),
        "payload": draw(st.sampled_from(["", _b64_json(draw(_JSON)), "!!", "e30"])),
        "signature": b64u(draw(st.binary(max_size=80))),
    }
    for key in draw(st.lists(st.sampled_from([*fields, "signatures", "header"]), max_size=2)):
        fields[key] = draw(_JSON)
    return json.dumps(fields).encode()


@pytest.fixture
async def acme(stack: Stack) -> AcmeClient:
    client = AcmeClient(stack.https)
    reply = await client.new_account(contact=["mailto:fuzz@example.internal"])
    assert reply.status == 201, reply.body
    return client


@settings(max_examples=strategies.examples(3))
@given(
    data=st.data(),
    path=st.sampled_from(_PATHS),
    content_type=st.sampled_from(["application/jose+json", "application/json", "text/plain", ""]),
)
async def test_acme_envelopes_answer_below_500(
    stack: Stack, acme: AcmeClient, data: st.DataObject, path: str, content_type: str
) -> None:
    strategies.count("test_acme_envelopes_answer_below_500")
    nonce = await acme.new_nonce()
    body = data.draw(envelopes(acme.url(path), nonce, jwk_of(acme.key)))
    resp = await strategies.within_deadline(
        stack.https.post(
            path,
            data=body,
            headers={"Content-Type": content_type},
            skip_auto_headers={"Content-Type"},
        )
    )
    text = await resp.read()
    assert resp.status < 500, (resp.status, path, body, text)


_CSR: Final = st.binary(max_size=300).map(
    lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
)
_IDENTIFIER: Final = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["dns", "ip", "email", "", 1]),
        "value": st.one_of(st.text(max_size=80), _JSON),
    }
)
_PAYLOADS: Final = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {"identifiers": st.lists(_IDENTIFIER, max_size=3)},
        optional={
            "notBefore": st.text(max_size=30),
            "notAfter": st.text(max_size=30),
            "replaces": st.text(max_size=60),
        },
    ),
    st.fixed_dictionaries({"csr": _CSR}),
    st.fixed_dictionaries({"certificate": _CSR}, optional={"reason": st.integers(-5, 20)}),
    st.fixed_dictionaries(
        {},
        optional={
            "contact": st.lists(st.text(max_size=40), max_size=3),
            "termsOfServiceAgreed": _JSON,
            "onlyReturnExisting": _JSON,
            "status": st.sampled_from(["deactivated", "valid", "x"]),
            "externalAccountBinding": _JSON,
        },
    ),
)


@settings(max_examples=strategies.examples(3))
@given(path=st.sampled_from(_PATHS), payload=_PAYLOADS, use_jwk=st.booleans())
async def test_acme_signed_payloads_answer_below_500(
    stack: Stack, acme: AcmeClient, path: str, payload: Any, use_jwk: bool
) -> None:
    strategies.count("test_acme_signed_payloads_answer_below_500")
    reply = await strategies.within_deadline(acme.post(acme.url(path), payload, use_jwk=use_jwk))
    assert reply.status < 500, (reply.status, path, payload, reply.body)
