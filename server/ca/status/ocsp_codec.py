"""DER codec for OCSP (RFC 6960 §4): parse requests, assemble and sign responses.

cryptography parses only single-CertID requests and builds only single
responses; RFC 6960 allows several CertIDs per request, so privca encodes the
few structures it needs itself. Strict DER reading (definite, minimal
lengths, exact nesting) so garbage is refused, never half-parsed. Pure and
synchronous; must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from server.ca.der import MalformedError
from server.ca.der import expect as _expect
from server.ca.der import gtime as _gtime
from server.ca.der import integer as _int
from server.ca.der import oid as _oid_bytes
from server.ca.der import read_tlv as _tlv
from server.ca.der import seq as _seq
from server.ca.der import wrap as _w
from server.ca.signer import Signer

__all__ = [
    "HASH_OIDS",
    "SHA1_OID",
    "CertId",
    "MalformedError",
    "OcspRequest",
    "SignerKey",
    "SingleStatus",
    "cert_id",
    "encode_response",
    "parse_request",
    "public_key_bits",
    "unsuccessful",
]


SHA1_OID: Final = _oid_bytes("1.3.14.3.2.26")
HASH_OIDS: Final[dict[bytes, str]] = {
    SHA1_OID: "sha1",
    _oid_bytes("2.16.840.1.101.3.4.2.1"): "sha256",
    _oid_bytes("2.16.840.1.101.3.4.2.2"): "sha384",
    _oid_bytes("2.16.840.1.101.3.4.2.3"): "sha512",
}
_NONCE_OID: Final = _oid_bytes("1.3.6.1.5.5.7.48.1.2")
_BASIC_OID: Final = _oid_bytes("1.3.6.1.5.5.7.48.1.1")
_MAX_NONCE: Final = 32  # RFC 8954 §2.1
_MAX_SERIAL_OCTETS: Final = 21  # 20 octets (RFC 5280) plus a sign octet


# ---------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class CertId:
    """One requested CertID; ``raw`` is its exact DER, echoed in the response."""

    raw: bytes
    hash_oid: bytes
    name_hash: bytes
    key_hash: bytes
    serial: int

    @property
    def hash_name(self) -> str | None:
        """Return sha1/sha256/sha384/sha512, None for another algorithm."""
        return HASH_OIDS.get(self.hash_oid)


@dataclass(frozen=True, slots=True)
class OcspRequest:
    """A parsed OCSPRequest: its CertIDs and the raw nonce extension value, if any."""

    items: tuple[CertId, ...]
    nonce: bytes | None


def _parse_cert_id(data: bytes, start: int, end: int) -> CertId:
    s, e = _expect(data, start, end, 0x30)
    raw_end = e
    alg_s, alg_e = _expect(data, s, e, 0x30)
    oid_s, oid_e = _expect(data, alg_s, alg_e, 0x06)
    if oid_e != alg_e:
        p_tag, p_s, p_e = _tlv(data, oid_e, alg_e)
        if p_tag != 0x05 or p_s != p_e or p_e != alg_e:
            raise MalformedError("hash algorithm parameters must be absent or NULL")
    nh_s, nh_e = _expect(data, alg_e, e, 0x04)
    kh_s, kh_e = _expect(data, nh_e, e, 0x04)
    sn_s, sn_e = _expect(data, kh_e, e, 0x02)
    if sn_e != e:
        raise MalformedError("trailing data in CertID")
    serial_bytes = data[sn_s:sn_e]
    if not serial_bytes or len(serial_bytes) > _MAX_SERIAL_OCTETS:
        raise MalformedError("bad serial number length")
    if serial_bytes[0] & 0x80:
        raise MalformedError("negative serial number")
    if len(serial_bytes) > 1 and serial_bytes[0] == 0 and not serial_bytes[1] & 0x80:
        raise MalformedError("non-minimal serial number")
    if nh_e - nh_s > 64 or kh_e - kh_s > 64:
        raise MalformedError("hash too long")
    return CertId(
        raw=data[start:raw_end],
        hash_oid=data[oid_s:oid_e],
        name_hash=data[nh_s:nh_e],
        key_hash=data[kh_s:kh_e],
        serial=int.from_bytes(serial_bytes, "big"),
    )


def _parse_nonce(data: bytes, start: int, end: int) -> bytes | None:
    """Return the nonce extension's extnValue contents from [2] Extensions."""
    s, e = _expect(data, start, end, 0x30)
    nonce: bytes | None = None
    pos = s
    while pos < e:
        ext_s, ext_e = _expect(data, pos, e, 0x30)
        pos = ext_e
        oid_s, oid_e = _expect(data, ext_s, ext_e, 0x06)
        nxt = oid_e
        tag, _, b_e = _tlv(data, nxt, ext_e)
        if tag == 0x01:
            nxt = b_e
        val_s, val_e = _expect(data, nxt, ext_e, 0x04)
        if val_e != ext_e:
            raise MalformedError("trailing data in extension")
        if data[oid_s:oid_e] != _NONCE_OID:
            continue
        value = data[val_s:val_e]
        # RFC 8954: the value is an OCTET STRING of 1..32 octets; accept bare octets too.
        inner = value
        if len(value) >= 2 and value[0] == 0x04:
            try:
                i_s, i_e = _expect(value, 0, len(value), 0x04)
            except MalformedError:
                i_s, i_e = 0, len(value)
            if i_e == len(value):
                inner = value[i_s:i_e]
        if not 1 <= len(inner) <= _MAX_NONCE:
            raise MalformedError("nonce must be 1 to 32 octets (RFC 8954)")
        nonce = value
    return nonce


def parse_request(data: bytes, *, max_items: int = 32) -> OcspRequest:
    """Parse a DER OCSPRequest (RFC 6960 §4.1.1); signed requests are accepted unverified.

    Raises:
        MalformedError: anything that is not one well-formed request.
    """
    end = len(data)
    top_s, top_e = _expect(data, 0, end, 0x30)
    if top_e != end:
        raise MalformedError("trailing data after the request")
    tbs_s, tbs_e = _expect(data, top_s, top_e, 0x30)
    if tbs_e != top_e:
        tag, _, sig_e = _tlv(data, tbs_e, top_e)
        if tag != 0xA0 or sig_e != top_e:
            raise MalformedError("unexpected element after tbsRequest")
    pos = tbs_s
    tag, s, e = _tlv(data, pos, tbs_e)
    if tag == 0xA0:  # version [0] EXPLICIT INTEGER, only v1 (0)
        v_s, v_e = _expect(data, s, e, 0x02)
        if data[v_s:v_e] != b"\x00" or v_e != e:
            raise MalformedError("unsupported request version")
        pos = e
        tag, s, e = _tlv(data, pos, tbs_e)
    if tag == 0xA1:  # requestorName, not used
        pos = e
        tag, s, e = _tlv(data, pos, tbs_e)
    if tag != 0x30:
        raise MalformedError("missing requestList")
    items: list[CertId] = []
    item_pos = s
    while item_pos < e:
        r_s, r_e = _expect(data, item_pos, e, 0x30)
        item_pos = r_e
        if len(items) >= max_items:
            raise MalformedError(f"at most {max_items} CertIDs per request")
        cid = _parse_cert_id(data, r_s, r_e)
        after = r_s + len(cid.raw)
        if after != r_e:
            ext_tag, _, ext_e = _tlv(data, after, r_e)
            if ext_tag != 0xA0 or ext_e != r_e:
                raise MalformedError("unexpected element in Request")
        items.append(cid)
    if not items:
        raise MalformedError("empty requestList")
    pos = e
    nonce = None
    if pos < tbs_e:
        tag, s, e = _tlv(data, pos, tbs_e)
        if tag != 0xA2 or e != tbs_e:
            raise MalformedError("unexpected element after requestList")
        nonce = _parse_nonce(data, s, e)
    return OcspRequest(items=tuple(items), nonce=nonce)


def public_key_bits(spki_der: bytes) -> bytes:
    """Return the subjectPublicKey BIT STRING contents (what CertID key hashes cover)."""
    s, e = _expect(spki_der, 0, len(spki_der), 0x30)
    _, alg_e = _expect(spki_der, s, e, 0x30)
    b_s, b_e = _expect(spki_der, alg_e, e, 0x03)
    return spki_der[b_s + 1 : b_e]


# ---------------------------------------------------------------------- writing


def cert_id(hash_name: str, *, name_der: bytes, key_bits: bytes, serial: int) -> bytes:
    """Return the DER CertID for an issuer (subject DER, key bits) and serial.

    The AlgorithmIdentifier carries NULL parameters, as OpenSSL sends them.
    """
    oid = next(o for o, n in HASH_OIDS.items() if n == hash_name)
    return _seq(
        _seq(_w(0x06, oid), b"\x05\x00"),
        _w(0x04, hashlib.new(hash_name, name_der).digest()),
        _w(0x04, hashlib.new(hash_name, key_bits).digest()),
        _int(serial),
    )


@dataclass(frozen=True, slots=True)
class SingleStatus:
    """One SingleResponse to encode: ``status`` is good, revoked or unknown."""

    cert_id: bytes
    status: str
    revoked_at: datetime | None = None
    reason_code: int | None = None


@dataclass(frozen=True, slots=True)
class SignerKey:
    """Who signs: the signer, responder key hash (SHA-1 of its key bits), certs to include."""

    signer: Signer
    key_hash: bytes
    certs: tuple[bytes, ...] = ()

    @property
    def algorithm(self) -> bytes:
        """Return the DER AlgorithmIdentifier of the signature."""
        return self.signer.algorithm


def _single(item: SingleStatus, this_update: datetime, next_update: datetime) -> bytes:
    if item.status == "good":
        status = b"\x80\x00"
    elif item.status == "revoked":
        info = _gtime(item.revoked_at or this_update)
        if item.reason_code is not None:
            info += _w(0xA0, _w(0x0A, bytes([item.reason_code])))
        status = _w(0xA1, info)
    else:
        status = b"\x82\x00"
    return _seq(item.cert_id, status, _gtime(this_update), _w(0xA0, _gtime(next_update)))


def encode_response(
    signer: SignerKey,
    items: Sequence[SingleStatus],
    *,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None = None,
) -> bytes:
    """Return a signed, successful OCSPResponse (DER) with one SingleResponse per item.

    ``nonce`` is the request's nonce extnValue, echoed byte for byte (RFC 8954).
    """
    parts = [
        _w(0xA2, _w(0x04, signer.key_hash)),  # ResponderID byKey
        _gtime(this_update),
        _seq(*(_single(i, this_update, next_update) for i in items)),
    ]
    if nonce is not None:
        parts.append(_w(0xA1, _seq(_seq(_w(0x06, _NONCE_OID), _w(0x04, nonce)))))
    tbs = _seq(*parts)
    basic_parts = [tbs, signer.algorithm, _w(0x03, b"\x00" + signer.signer.sign(tbs))]
    if signer.certs:
        basic_parts.append(_w(0xA0, _seq(*signer.certs)))
    basic = _seq(*basic_parts)
    return _seq(b"\x0a\x01\x00", _w(0xA0, _seq(_w(0x06, _BASIC_OID), _w(0x04, basic))))


def unsuccessful(status: int) -> bytes:
    """Return an OCSPResponse with an error status and no responseBytes."""
    return bytes([0x30, 0x03, 0x0A, 0x01, status])


def spki_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """Return the DER SubjectPublicKeyInfo of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
