"""Minimal DER reading and writing, and raw signing, for the structures privca encodes itself.

OCSP responses (``ocsp_codec``) and CRLs (``crl_codec``) are assembled here
rather than through cryptography's builders where those cannot express the
structure (several SingleResponses) or cost too much at scale (a million CRL
entries). Strict reading: definite, minimal lengths and exact nesting, so
garbage is refused, never half-parsed. Pure and synchronous; must not import
aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server.ca import keys

__all__ = [
    "MalformedError",
    "expect",
    "gtime",
    "integer",
    "length",
    "oid",
    "read_tlv",
    "seq",
    "sign",
    "signature_algorithm",
    "wrap",
]


class MalformedError(ValueError):
    """The bytes are not the DER structure expected."""


# ---------------------------------------------------------------------- reading


def read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the element at ``pos``.

    Refuses high tag numbers, indefinite and non-minimal lengths, and elements
    running past ``end``.
    """
    if pos + 2 > end:
        raise MalformedError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedError("the high-tag-number form is not used here")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        size = first
    else:
        n = first & 0x7F
        if n == 0:
            raise MalformedError("indefinite length is not DER")
        if n > 4 or pos + n > end:
            raise MalformedError("DER length out of range")
        size = int.from_bytes(data[pos : pos + n], "big")
        if data[pos] == 0 or size < 0x80:
            raise MalformedError("DER length is not minimally encoded")
        pos += n
    if pos + size > end:
        raise MalformedError("DER element runs past its container")
    return tag, pos, pos + size


def expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Return (content start, content end) of the element at ``pos``, which must have ``tag``."""
    got, start, stop = read_tlv(data, pos, end)
    if got != tag:
        raise MalformedError(f"expected tag {tag:#x}, got {got:#x}")
    return start, stop


# ---------------------------------------------------------------------- writing


def oid(dotted: str) -> bytes:
    """Return the content octets of an OBJECT IDENTIFIER."""
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def length(n: int) -> bytes:
    """Return the DER length octets for ``n`` content octets."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def wrap(tag: int, content: bytes) -> bytes:
    """Return one element: tag, length, content."""
    return bytes([tag]) + length(len(content)) + content


def seq(*parts: bytes) -> bytes:
    """Return a SEQUENCE of already-encoded elements."""
    return wrap(0x30, b"".join(parts))


def integer(n: int) -> bytes:
    """Return a non-negative INTEGER, minimally encoded."""
    return wrap(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def gtime(dt: datetime) -> bytes:
    """Return a GeneralizedTime (UTC, whole seconds)."""
    return wrap(0x18, dt.strftime("%Y%m%d%H%M%SZ").encode())


# ---------------------------------------------------------------------- signing

_SIG_OIDS: Final = {
    ("ec", "sha256"): "1.2.840.10045.4.3.2",
    ("ec", "sha384"): "1.2.840.10045.4.3.3",
    ("ec", "sha512"): "1.2.840.10045.4.3.4",
    ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12",
    ("rsa", "sha512"): "1.2.840.113549.1.1.13",
}
_PURE_OIDS: Final = {
    ed25519.Ed25519PrivateKey: "1.3.101.112",
    ed448.Ed448PrivateKey: "1.3.101.113",
    mldsa.MLDSA44PrivateKey: "2.16.840.1.101.3.4.3.17",
    mldsa.MLDSA65PrivateKey: "2.16.840.1.101.3.4.3.18",
    mldsa.MLDSA87PrivateKey: "2.16.840.1.101.3.4.3.19",
}


def signature_algorithm(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """Return the DER AlgorithmIdentifier ``sign`` produces for this key."""
    for kind, dotted in _PURE_OIDS.items():
        if isinstance(key, kind):
            return seq(wrap(0x06, oid(dotted)))
    digest = keys.signature_hash(key)
    if digest is None:
        raise TypeError(f"cannot sign with {type(key).__name__}")
    if isinstance(key, rsa.RSAPrivateKey):
        return seq(wrap(0x06, oid(_SIG_OIDS[("rsa", digest.name)])), b"\x05\x00")
    return seq(wrap(0x06, oid(_SIG_OIDS[("ec", digest.name)])))


def sign(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """Sign ``data`` as cryptography's X.509 builders do (PKCS#1 v1.5, ECDSA, pure EdDSA/ML-DSA)."""
    digest = keys.signature_hash(key)
    if isinstance(key, rsa.RSAPrivateKey) and digest is not None:
        return key.sign(data, padding.PKCS1v15(), digest)
    if isinstance(key, ec.EllipticCurvePrivateKey) and digest is not None:
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(
        key,
        ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
        | mldsa.MLDSA44PrivateKey
        | mldsa.MLDSA65PrivateKey
        | mldsa.MLDSA87PrivateKey,
    ):
        return key.sign(data)
    raise TypeError(f"cannot sign with {type(key).__name__}")
