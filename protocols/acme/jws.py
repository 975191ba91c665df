"""JWS for ACME (RFC 8555 §6.2, RFC 7515/7517/7638): parse, check and verify requests.

josepy owns the wire objects: JWKs are parsed into ``jose_jwk.JWK`` (RFC 7638
thumbprints come from it), and signatures are checked by josepy's JWA
algorithms. josepy 2 has no OKP keys or EdDSA, so Ed25519 (RFC 8037) is added
here as a registered ``JWK`` type and ``JWASignature``.

This module keeps only ACME's own rules: flattened JSON serialization only,
strict base64url (RFC 8555 §6.1), exactly one of ``jwk``/``kid``, no
unprotected header, no ``crit``, no ``b64: false``, the ``alg`` allow-list,
the account-key policy, and the ``url``/``nonce`` checks in ``authenticate``.

Divergence: the envelope is parsed here rather than by ``josepy.JWS.from_json``,
which accepts the general serialization and unprotected headers, decodes every
registered header eagerly (an unknown ``alg`` is a bare KeyError) and
re-encodes protected header and payload before verifying, so the signing input
would not be the bytes the client signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from josepy import errors as jose_errors
from josepy import json_util, jwa
from josepy import jwk as jose_jwk

from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "ALGORITHMS",
    "Flattened",
    "PublicJwk",
    "PublicKey",
    "Verified",
    "authenticate",
    "b64u_decode",
    "b64u_encode",
    "load_jwk",
    "parse",
    "verify_eab",
    "verify_signature",
]


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@jose_jwk.JWK.register
class _JWKOKP(jose_jwk.JWK):
    """An Ed25519 public JWK (RFC 8037 §2), which josepy 2 lacks."""

    typ = "OKP"
    __slots__ = ("key",)
    cryptography_key_types = (ed25519.Ed25519PublicKey,)
    required = ("crv", jose_jwk.JWK.type_field_name, "x")
    key: ed25519.Ed25519PublicKey

    def fields_to_partial_json(self) -> dict[str, str]:
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "x": json_util.encode_b64jose(raw)}

    @classmethod
    def fields_from_json(cls, jobj: Mapping[str, Any]) -> _JWKOKP:
        raw = json_util.decode_b64jose(jobj["x"])
        return cls(key=ed25519.Ed25519PublicKey.from_public_bytes(raw))

    def public_key(self) -> _JWKOKP:
        return self


class _EdDSA(jwa.JWASignature):
    """EdDSA over Ed25519 (RFC 8037 §3.1), which josepy 2 lacks.

    The registration is process-wide, so josepy users in the same process (the
    tests' certbot client) can sign with it too.
    """

    kty = _JWKOKP

    def sign(self, key: ed25519.Ed25519PrivateKey, msg: bytes) -> bytes:
        return key.sign(msg)

    def verify(self, key: ed25519.Ed25519PublicKey, msg: bytes, sig: bytes) -> bool:
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class PublicJwk:
    """A parsed public JWK: josepy's wire object and the bare ``cryptography`` key."""

    jwk: jose_jwk.JWK
    # josepy wraps RSA and EC keys in ComparableKey, whose attribute delegation costs
    # 1.5 us per access; verification uses this unwrapped key instead (see verify_signature).
    key: PublicKey


_JWA: Final[dict[str, jwa.JWASignature]] = {
    "RS256": jwa.RS256,
    "ES256": jwa.ES256,
    "ES384": jwa.ES384,
    "ES512": jwa.ES512,
    "EdDSA": jwa.JWASignature.register(_EdDSA("EdDSA")),
}
ALGORITHMS: Final = tuple(_JWA)
# RFC 7518 §3.4: each ES alg names one curve; josepy would verify ES384 over a P-256 key.
_ES_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_CURVES: Final = frozenset({"P-256", "P-384", "P-521"})
_B64URL: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_MIN_RSA_BITS: Final = 2048
_MAX_RSA_BITS: Final = 8192
_KEY_CACHE_MAX: Final = 10_000
_key_cache: dict[str, tuple[PublicJwk, acme_api.AccountKey]] = {}


def _malformed(detail: str) -> EngineError:
    return EngineError(ProblemKind.MALFORMED, detail)


def b64u_encode(data: bytes) -> str:
    """Encode base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(value: object, what: str) -> bytes:
    """Decode strict base64url without padding (RFC 7515 §2).

    Raises:
        EngineError: MALFORMED naming ``what``.
    """
    if not isinstance(value, str):
        raise _malformed(f"{what} must be a base64url string")
    raw = value.encode("ascii", "replace")
    if raw.translate(None, _B64URL) or len(raw) % 4 == 1:
        raise _malformed(f"{what} is not valid base64url")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not valid base64url") from None


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object. Raises: EngineError MALFORMED naming ``what``."""
    return _json_object(data, what)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _malformed(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Flattened:
    """A structurally valid flattened JWS."""

    protected: dict[str, Any]
    protected_b64: str
    payload: bytes
    payload_b64: str
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        """Return ``protected '.' payload`` as signed (RFC 7515 §5.1)."""
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")


def parse(body: bytes | Mapping[str, Any]) -> Flattened:
    """Parse a flattened JWS and its protected header.

    Raises:
        EngineError: MALFORMED for anything but a flattened JWS with a protected
            header; BAD_SIGNATURE_ALGORITHM for an algorithm outside ALGORITHMS.
    """
    obj = dict(body) if isinstance(body, Mapping) else _json_object(body, "the request body")
    if "signatures" in obj:
        raise _malformed("only the flattened JWS serialization is accepted")
    if "header" in obj:
        raise _malformed("unprotected JWS headers are not allowed (RFC 8555 §6.2)")
    if set(obj) != {"protected", "payload", "signature"}:
        raise _malformed("a JWS has exactly protected, payload and signature")
    protected_b64, payload_b64 = obj["protected"], obj["payload"]
    header = _json_object(b64u_decode(protected_b64, "protected"), "the protected header")
    payload = b64u_decode(payload_b64, "payload")
    signature = b64u_decode(obj["signature"], "signature")
    if not signature:
        raise _malformed("the JWS signature is empty")
    if "crit" in header:
        raise _malformed("critical JWS header parameters are not supported")
    if header.get("b64", True) is not True:
        raise _malformed("unencoded payloads (b64: false) are not supported")
    return Flattened(
        protected=header,
        protected_b64=protected_b64,
        payload=payload,
        payload_b64=payload_b64,
        signature=signature,
    )


def _int(value: object, what: str) -> int:
    return int.from_bytes(b64u_decode(value, what), "big")


def _check_members(jwk: Mapping[str, Any]) -> None:
    """Apply ACME's key policy and strict base64url to a JWK before josepy parses it."""
    kty = jwk.get("kty")
    if kty == "RSA":
        n, e = _int(jwk.get("n"), "jwk n"), _int(jwk.get("e"), "jwk e")
        if not _MIN_RSA_BITS <= n.bit_length() <= _MAX_RSA_BITS or e < 3 or e % 2 == 0:
            raise EngineError(
                ProblemKind.BAD_PUBLIC_KEY,
                f"RSA account keys must be {_MIN_RSA_BITS}-{_MAX_RSA_BITS} bits"
                " with an odd exponent",
            )
    elif kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _CURVES:
            raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"unsupported EC curve {crv!r}")
        b64u_decode(jwk.get("x"), "jwk x")
        b64u_decode(jwk.get("y"), "jwk y")
    elif kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise EngineError(ProblemKind.BAD_PUBLIC_KEY, "OKP keys must be Ed25519")
        b64u_decode(jwk.get("x"), "jwk x")
    else:
        raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"unsupported key type {kty!r}")


def load_jwk(jwk: object) -> tuple[PublicJwk, acme_api.AccountKey]:
    """Return a public JWK, its canonical form and thumbprint (RFC 7638).

    Raises:
        EngineError: MALFORMED (not a usable public JWK), BAD_PUBLIC_KEY (weak or
            unsupported key).
    """
    if not isinstance(jwk, dict):
        raise _malformed("jwk must be a JSON object")
    cache_key = json.dumps(jwk, sort_keys=True)
    cached = _key_cache.get(cache_key)
    if cached is not None:
        return cached
    if "d" in jwk or "p" in jwk or "k" in jwk:
        raise EngineError(ProblemKind.BAD_PUBLIC_KEY, "the jwk must be a public key")
    _check_members(jwk)
    try:
        # JWK.from_json is typed as its base class; it returns the registered JWK subclass.
        key = cast(jose_jwk.JWK, jose_jwk.JWK.from_json(jwk))
    except jose_errors.DeserializationError:
        # Members are strict base64url by now: josepy refuses only EC coordinates
        # that are not full length (RFC 7518 §6.2.1.2).
        raise _malformed("jwk x and y must be full-length coordinates") from None
    except (ValueError, UnsupportedAlgorithm):
        raise EngineError(ProblemKind.BAD_PUBLIC_KEY, "the jwk is not a valid public key") from None
    members = {k: v for k, v in key.to_json().items() if k in key.required}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    spki = key.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # One of the three JWK types registered with josepy, so one of PublicKey's members.
    public = cast(PublicKey, serialization.load_der_public_key(spki))
    account_key = acme_api.AccountKey(
        jwk=canonical, thumbprint=b64u_encode(key.thumbprint()), spki=spki
    )
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    result = (PublicJwk(jwk=key, key=public), account_key)
    _key_cache[cache_key] = result
    return result


def key_from_account(account_key: acme_api.AccountKey) -> PublicJwk:
    """Return the public key of a stored account key (cached)."""
    key, _ = load_jwk(json.loads(account_key.jwk))
    return key


def verify_signature(alg: str, key: PublicJwk, signing_input: bytes, signature: bytes) -> None:
    """Verify a JWS signature with josepy's algorithm for ``alg``.

    josepy's JWA does the verification, but over the bare ``cryptography`` key rather
    than josepy's ComparableKey wrapper: through the wrapper, ES256/RS256 verification
    measured 5-10% slower than the hand-rolled code it replaced (2-6 us a request).

    Raises:
        EngineError: BAD_SIGNATURE_ALGORITHM (alg unknown or not for this key),
            MALFORMED (the signature does not verify).
    """
    jwa_alg = _JWA.get(alg)
    if jwa_alg is None or type(key.jwk) is not jwa_alg.kty:
        raise EngineError(
            ProblemKind.BAD_SIGNATURE_ALGORITHM, f"algorithm {alg!r} does not fit the key"
        )
    public = key.key
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, _ES_CURVES[alg]):
            raise EngineError(
                ProblemKind.BAD_SIGNATURE_ALGORITHM, f"{alg} does not match the key's curve"
            )
        if len(signature) != 2 * jose_jwk.JWKEC.expected_length_for_curve(public.curve):
            raise _malformed("the JWS signature has the wrong length")
    if not jwa_alg.verify(public, signing_input, signature):
        raise _malformed("the JWS signature does not verify")


def _check_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise EngineError(
            ProblemKind.BAD_SIGNATURE_ALGORITHM,
            f"unsupported JWS algorithm {alg!r} (supported: {', '.join(ALGORITHMS)})",
        )
    return alg


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature, URL and nonce have been checked."""

    jws: Flattened
    key: PublicJwk
    account_key: acme_api.AccountKey
    account: acme_api.Account | None

    @property
    def is_post_as_get(self) -> bool:
        """Return True for an empty payload (RFC 8555 §6.3)."""
        return self.jws.payload_b64 == ""

    def payload_json(self) -> dict[str, Any]:
        """Return the payload as a JSON object. Raises: EngineError MALFORMED."""
        return _json_object(self.jws.payload, "the payload")


async def authenticate(
    body: bytes,
    *,
    url: str,
    registration: acme_api.AcmeService,
    account_id_of: Callable[[str], str | None],
    use_jwk: bool,
    allow_both: bool = False,
    consume_nonce: Callable[[str], Awaitable[None]] | None = None,
) -> Verified:
    """Check a request JWS: structure, algorithm, key, signature, URL and nonce.

    ``use_jwk`` selects newAccount-style requests (embedded ``jwk``); otherwise
    ``kid`` must name an existing valid account. ``allow_both`` is for revokeCert.

    Raises:
        EngineError: MALFORMED, BAD_SIGNATURE_ALGORITHM, BAD_PUBLIC_KEY, BAD_NONCE,
            UNAUTHORIZED (wrong url), ACCOUNT_DOES_NOT_EXIST.
    """
    jws = parse(body)
    header = jws.protected
    alg = _check_alg(header)
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise _malformed("the protected header needs exactly one of jwk and kid")
    if not allow_both and has_jwk != use_jwk:
        needed = "jwk" if use_jwk else "kid"
        raise _malformed(f"this request must identify its key with {needed}")
    header_url = header.get("url")
    if not isinstance(header_url, str):
        raise _malformed("the protected header has no url")
    nonce = header.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise EngineError(ProblemKind.BAD_NONCE, "the protected header has no nonce")
    if header_url != url:
        raise EngineError(ProblemKind.UNAUTHORIZED, "the url header does not match the request URL")
    account: acme_api.Account | None = None
    if has_jwk:
        key, account_key = load_jwk(header["jwk"])
    else:
        kid = header["kid"]
        account_id = account_id_of(kid) if isinstance(kid, str) else None
        if account_id is None:
            raise EngineError(ProblemKind.ACCOUNT_DOES_NOT_EXIST, "the kid is not an account URL")
        account = await registration.account(account_id)
        account_key = account.key
        key = key_from_account(account_key)
    verify_signature(alg, key, jws.signing_input, jws.signature)
    await (consume_nonce or registration.use_nonce)(nonce)
    return Verified(jws=jws, key=key, account_key=account_key, account=account)


def verify_eab(eab: object, *, outer_jwk: Mapping[str, Any], url: str) -> acme_api.EabBinding:
    """Check the structure of an externalAccountBinding inner JWS (RFC 8555 §7.3.4).

    The MAC itself is checked by the engine with the stored key.

    Raises:
        EngineError: MALFORMED, BAD_SIGNATURE_ALGORITHM.
    """
    if not isinstance(eab, dict):
        raise _malformed("externalAccountBinding must be a JWS object")
    inner = parse(eab)
    header = inner.protected
    if header.get("alg") != "HS256":
        raise EngineError(
            ProblemKind.BAD_SIGNATURE_ALGORITHM, "externalAccountBinding must use HS256"
        )
    if "nonce" in header or "jwk" in header:
        raise _malformed("externalAccountBinding must not carry a nonce or jwk")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _malformed("externalAccountBinding needs a kid")
    if header.get("url") != url:
        raise _malformed("externalAccountBinding url must be the newAccount URL")
    inner_jwk = _json_object(inner.payload, "the externalAccountBinding payload")
    if inner_jwk != dict(outer_jwk):
        raise _malformed("externalAccountBinding payload must be the account key")
    if len(inner.signature) != hashlib.sha256().digest_size:
        raise _malformed("externalAccountBinding MAC has the wrong length")
    return acme_api.EabBinding(
        kid=kid, signing_input=inner.signing_input, signature=inner.signature
    )
