"""protocols/acme/jws.py: every JWK and signature refusal keeps its problem type and detail."""

from __future__ import annotations

import functools
import json
from typing import Any

import josepy.jwa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from protocols.acme import jws
from server.ca.errors import EngineError, ProblemKind
from tests.protocols.acme.support import AnyKey, b64u, jwk_of, sign_raw, thumbprint

MALFORMED = ProblemKind.MALFORMED
BAD_KEY = ProblemKind.BAD_PUBLIC_KEY
BAD_ALG = ProblemKind.BAD_SIGNATURE_ALGORITHM
RSA_DETAIL = "RSA account keys must be 2048-8192 bits with an odd exponent"


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
    }
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _rsa_jwk(n: int, e: int) -> dict[str, str]:
    return {
        "kty": "RSA",
        "n": b64u(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")),
        "e": b64u(e.to_bytes((e.bit_length() + 7) // 8, "big")),
    }


def _with(jwk: dict[str, str], **members: Any) -> dict[str, Any]:
    out: dict[str, Any] = {**jwk, **members}
    return {k: v for k, v in out.items() if v is not None}


def _bad_jwks() -> list[Any]:
    p256 = jwk_of(ec_key())
    rsa_n = rsa_key().public_key().public_numbers().n
    return [
        pytest.param("x", MALFORMED, "jwk must be a JSON object", id="fail/not-object"),
        pytest.param(
            _with(p256, d="AA"), BAD_KEY, "the jwk must be a public key", id="fail/private-ec"
        ),
        pytest.param(
            {"kty": "oct", "k": "AAAA"}, BAD_KEY, "the jwk must be a public key", id="fail/oct"
        ),
        pytest.param({"kty": "XYZ"}, BAD_KEY, "unsupported key type 'XYZ'", id="fail/unknown-kty"),
        pytest.param({}, BAD_KEY, "unsupported key type None", id="fail/no-kty"),
        pytest.param(
            {"kty": "RSA", "e": "AQAB"},
            MALFORMED,
            "jwk n must be a base64url string",
            id="fail/rsa-no-n",
        ),
        pytest.param(
            {"kty": "RSA", "n": "a+b/", "e": "AQAB"},
            MALFORMED,
            "jwk n is not valid base64url",
            id="fail/rsa-n-not-base64url",
        ),
        pytest.param(
            {**_rsa_jwk(rsa_n, 65537), "e": "AQAB="},
            MALFORMED,
            "jwk e is not valid base64url",
            id="fail/rsa-e-padded",
        ),
        pytest.param(_rsa_jwk(rsa_n >> 1100, 65537), BAD_KEY, RSA_DETAIL, id="fail/rsa-short"),
        pytest.param(_rsa_jwk(rsa_n, 65536), BAD_KEY, RSA_DETAIL, id="fail/rsa-even-exponent"),
        pytest.param(_rsa_jwk(rsa_n, 1), BAD_KEY, RSA_DETAIL, id="fail/rsa-exponent-one"),
        pytest.param(
            _rsa_jwk(rsa_n, rsa_n + 2),
            BAD_KEY,
            "the jwk is not a valid public key",
            id="fail/rsa-exponent-above-modulus",
        ),
        pytest.param(
            _with(p256, crv=["P-256"]),
            BAD_KEY,
            "unsupported EC curve ['P-256']",
            id="fail/ec-curve-not-string",
        ),
        pytest.param(
            _with(p256, crv="P-192"), BAD_KEY, "unsupported EC curve 'P-192'", id="fail/ec-p192"
        ),
        pytest.param(
            _with(p256, x=b64u(b"\x01" * 31)),
            MALFORMED,
            "jwk x and y must be full-length coordinates",
            id="fail/ec-short-x",
        ),
        pytest.param(
            _with(p256, y=None), MALFORMED, "jwk y must be a base64url string", id="fail/ec-no-y"
        ),
        pytest.param(
            _with(p256, y=b64u(b"\x01" * 32)),
            BAD_KEY,
            "the jwk is not a valid public key",
            id="fail/ec-not-on-curve",
        ),
        pytest.param(
            {"kty": "OKP", "crv": "X25519", "x": b64u(b"\x01" * 32)},
            BAD_KEY,
            "OKP keys must be Ed25519",
            id="fail/okp-x25519",
        ),
        pytest.param(
            {"kty": "OKP", "crv": "Ed25519", "x": b64u(b"\x01" * 31)},
            BAD_KEY,
            "the jwk is not a valid public key",
            id="fail/okp-short",
        ),
        pytest.param(
            {"kty": "OKP", "crv": "Ed25519"},
            MALFORMED,
            "jwk x must be a base64url string",
            id="fail/okp-no-x",
        ),
    ]


@pytest.mark.parametrize(("jwk", "kind", "detail"), _bad_jwks())
def test_bad_jwk_is_refused_with_its_detail(jwk: Any, kind: ProblemKind, detail: str) -> None:
    with pytest.raises(EngineError) as caught:
        jws.load_jwk(jwk)
    assert (caught.value.kind, caught.value.detail) == (kind, detail)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: rsa_key(), id="ok/rsa-2048"),
        pytest.param(lambda: ec_key("P-256"), id="ok/p256"),
        pytest.param(lambda: ec_key("P-384"), id="ok/p384"),
        pytest.param(lambda: ec_key("P-521"), id="ok/p521"),
        pytest.param(lambda: ed_key(), id="ok/ed25519"),
    ],
)
def test_jwk_thumbprint_and_canonical_form_follow_rfc7638(make: Any) -> None:
    key: AnyKey = make()
    jwk = {**jwk_of(key), "use": "sig", "kid": "ignored"}
    _, account_key = jws.load_jwk(jwk)
    assert account_key.thumbprint == thumbprint(key)
    assert json.loads(account_key.jwk) == jwk_of(key)
    assert account_key.jwk == json.dumps(dict(sorted(jwk_of(key).items())), separators=(",", ":"))


def test_rfc7638_example_thumbprint() -> None:
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    _, account_key = jws.load_jwk({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256"})
    assert account_key.thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _sig(key: AnyKey, data: bytes) -> bytes:
    return sign_raw(key, data)


def test_good_signatures_verify() -> None:
    pairs: list[tuple[AnyKey, str]] = [
        (rsa_key(), "RS256"),
        (ec_key("P-256"), "ES256"),
        (ec_key("P-384"), "ES384"),
        (ec_key("P-521"), "ES512"),
        (ed_key(), "EdDSA"),
    ]
    for key, alg in pairs:
        public, _ = jws.load_jwk(jwk_of(key))
        jws.verify_signature(alg, public, b"a.b", _sig(key, b"a.b"))


@pytest.mark.parametrize(
    ("key", "alg", "signature", "kind", "detail"),
    [
        pytest.param(
            "ec", "RS256", None, BAD_ALG, "algorithm 'RS256' does not fit the key", id="fail/rs-ec"
        ),
        pytest.param(
            "rsa",
            "ES256",
            None,
            BAD_ALG,
            "algorithm 'ES256' does not fit the key",
            id="fail/es-rsa",
        ),
        pytest.param(
            "ed", "ES256", None, BAD_ALG, "algorithm 'ES256' does not fit the key", id="fail/es-ed"
        ),
        pytest.param(
            "ec", "EdDSA", None, BAD_ALG, "algorithm 'EdDSA' does not fit the key", id="fail/ed-ec"
        ),
        pytest.param(
            "ec", "ES384", None, BAD_ALG, "ES384 does not match the key's curve", id="fail/curve"
        ),
        pytest.param(
            "ec",
            "ES256",
            b"\x01" * 63,
            MALFORMED,
            "the JWS signature has the wrong length",
            id="fail/es-length",
        ),
        pytest.param(
            "ec",
            "ES256",
            b"\x01" * 64,
            MALFORMED,
            "the JWS signature does not verify",
            id="fail/es-bad",
        ),
        pytest.param(
            "rsa",
            "RS256",
            b"\x01" * 256,
            MALFORMED,
            "the JWS signature does not verify",
            id="fail/rs-bad",
        ),
        pytest.param(
            "ed",
            "EdDSA",
            b"\x01" * 64,
            MALFORMED,
            "the JWS signature does not verify",
            id="fail/ed-bad",
        ),
    ],
)
def test_bad_signature_is_refused_with_its_detail(
    key: str, alg: str, signature: bytes | None, kind: ProblemKind, detail: str
) -> None:
    keys: dict[str, AnyKey] = {"ec": ec_key(), "rsa": rsa_key(), "ed": ed_key()}
    private = keys[key]
    public, _ = jws.load_jwk(jwk_of(private))
    with pytest.raises(EngineError) as caught:
        jws.verify_signature(alg, public, b"a.b", signature or _sig(private, b"a.b"))
    assert (caught.value.kind, caught.value.detail) == (kind, detail)


def test_signature_over_other_input_does_not_verify() -> None:
    public, _ = jws.load_jwk(jwk_of(ec_key()))
    with pytest.raises(EngineError) as caught:
        jws.verify_signature("ES256", public, b"a.c", _sig(ec_key(), b"a.b"))
    assert caught.value.detail == "the JWS signature does not verify"


def test_eddsa_registration_signs_and_verifies() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    alg = josepy.jwa.JWASignature.from_json("EdDSA")
    signature = alg.sign(key, b"payload")
    assert alg.verify(key.public_key(), b"payload", signature)
    assert not alg.verify(key.public_key(), b"other", signature)
