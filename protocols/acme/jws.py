"""JWS for ACME (RFC 8555 §6.2, RFC 7515/7517/7638): parse, check and verify requests.

Flattened JSON serialization only; RS256, ES256/384/512 and EdDSA (Ed25519);
``jwk`` or ``kid`` (never both); no unprotected header, no ``crit``, no
``b64: false``. The URL, nonce and account checks live in ``authenticate``.

Divergence: signatures and JWKs are handled with ``cryptography`` directly
rather than josepy, which accepts more than RFC 8555 allows (general
serialization, unprotected headers) and costs more per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from server.ca.acme import api as acme_api
from server.ca.errors import EngineError, ProblemKind

__all__ = [
    "ALGORITHMS",
    "Flattened",
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
ALGORITHMS: Final = ("RS256", "ES256", "ES384", "ES512", "EdDSA")
_EC: Final[dict[str, tuple[type[ec.EllipticCurve], str, int, hashes.HashAlgorithm]]] = {
    "ES256": (ec.SECP256R1, "P-256", 32, hashes.SHA256()),
    "ES384": (ec.SECP384R1, "P-384", 48, hashes.SHA384()),
    "ES512": (ec.SECP521R1, "P-521", 66, hashes.SHA512()),
}
_CURVES: Final = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_B64URL: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_MIN_RSA_BITS: Final = 2048
_MAX_RSA_BITS: Final = 8192
_KEY_CACHE_MAX: Final = 10_000
_key_cache: dict[str, tuple[PublicKey, acme_api.AccountKey]] = {}


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


def _canonical(members: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(members.items())), separators=(",", ":"))


def load_jwk(jwk: object) -> tuple[PublicKey, acme_api.AccountKey]:
    """Return the public key of a JWK and its canonical form and thumbprint (RFC 7638).

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
    kty = jwk.get("kty")
    key: PublicKey
    try:
        if kty == "RSA":
            members = {"e": jwk.get("e"), "kty": "RSA", "n": jwk.get("n")}
            n, e = _int(jwk.get("n"), "jwk n"), _int(jwk.get("e"), "jwk e")
            if not _MIN_RSA_BITS <= n.bit_length() <= _MAX_RSA_BITS or e < 3 or e % 2 == 0:
                raise EngineError(
                    ProblemKind.BAD_PUBLIC_KEY,
                    f"RSA account keys must be {_MIN_RSA_BITS}-{_MAX_RSA_BITS} bits"
                    " with an odd exponent",
                )
            key = rsa.RSAPublicNumbers(e, n).public_key()
        elif kty == "EC":
            crv = jwk.get("crv")
            if not isinstance(crv, str) or crv not in _CURVES:
                raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"unsupported EC curve {crv!r}")
            members = {"crv": crv, "kty": "EC", "x": jwk.get("x"), "y": jwk.get("y")}
            size = (_CURVES[crv].key_size + 7) // 8
            xb, yb = b64u_decode(jwk.get("x"), "jwk x"), b64u_decode(jwk.get("y"), "jwk y")
            if len(xb) != size or len(yb) != size:
                raise _malformed("jwk x and y must be full-length coordinates")
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), _CURVES[crv]
            ).public_key()
        elif kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise EngineError(ProblemKind.BAD_PUBLIC_KEY, "OKP keys must be Ed25519")
            members = {"crv": "Ed25519", "kty": "OKP", "x": jwk.get("x")}
            key = ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(jwk.get("x"), "jwk x"))
        else:
            raise EngineError(ProblemKind.BAD_PUBLIC_KEY, f"unsupported key type {kty!r}")
    except (ValueError, UnsupportedAlgorithm):
        raise EngineError(ProblemKind.BAD_PUBLIC_KEY, "the jwk is not a valid public key") from None
    canonical = _canonical({k: str(v) for k, v in members.items()})
    thumbprint = b64u_encode(hashlib.sha256(canonical.encode()).digest())
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    result = (key, acme_api.AccountKey(jwk=canonical, thumbprint=thumbprint, spki=spki))
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    _key_cache[cache_key] = result
    return result


def key_from_account(account_key: acme_api.AccountKey) -> PublicKey:
    """Return the public key of a stored account key (cached)."""
    key, _ = load_jwk(json.loads(account_key.jwk))
    return key


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    """Verify a JWS signature.

    Raises:
        EngineError: BAD_SIGNATURE_ALGORITHM (alg unknown or not for this key),
            MALFORMED (the signature does not verify).
    """
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg in _EC and isinstance(key, ec.EllipticCurvePublicKey):
            curve, _, size, digest = _EC[alg]
            if not isinstance(key.curve, curve):
                raise EngineError(
                    ProblemKind.BAD_SIGNATURE_ALGORITHM, f"{alg} does not match the key's curve"
                )
            if len(signature) != 2 * size:
                raise _malformed("the JWS signature has the wrong length")
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            raise EngineError(
                ProblemKind.BAD_SIGNATURE_ALGORITHM, f"algorithm {alg!r} does not fit the key"
            )
    except InvalidSignature:
        raise _malformed("the JWS signature does not verify") from None


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
    key: PublicKey
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
