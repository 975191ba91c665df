"""EST wire formats (RFC 7030 §4, RFC 8951): base64 DER in and out, PKCS#7, csrattrs, multipart.

Parses request bodies into DER and renders engine results; builds no
certificates and makes no policy decisions. Imports only the engine facade
types and cryptography/pyasn1 encoders.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5652, rfc7030

from server.ca import der
from server.ca.est import api as est_api

__all__ = [
    "CERTS_ONLY",
    "CSRATTRS",
    "PKCS8",
    "EstError",
    "certs_only",
    "csr_der_from_body",
    "csrattrs_der",
    "encode_base64",
    "is_pkcs10",
    "serverkeygen_multipart",
]

CERTS_ONLY: Final = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS: Final = "application/csrattrs"
_OID_CRI_TEMPLATE: Final = "1.2.840.113549.1.9.16.2.61"  # id-aa-certificationRequestInfoTemplate
_OID_EXT_REQ_TEMPLATE: Final = "1.2.840.113549.1.9.16.2.62"  # id-aa-extensionReqTemplate
_OID_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
_NULL: Final = b"\x05\x00"
PKCS8: Final = "application/pkcs8"
PKCS10: Final = "application/pkcs10"
_LINE: Final = 64


@dataclass(eq=False)
class EstError(Exception):
    """A front-end refusal rendered as the status plus a short text/plain reason."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.reason}")


def is_pkcs10(content_type: str) -> bool:
    """Return True for ``application/pkcs10`` (parameters and case ignored)."""
    return content_type.split(";", 1)[0].strip().lower() == PKCS10


def csr_der_from_body(body: bytes) -> bytes:
    """Return the DER CSR of a base64 body (RFC 8951 §3.2), tolerant of line breaks.

    A PEM-armoured CSR is accepted too (armour lines are dropped).

    Raises:
        EstError: 400 when the body is empty or not base64.
    """
    text = body.strip()
    if text.startswith(b"-----"):
        text = b"\n".join(
            line for line in text.splitlines() if not line.strip().startswith(b"-----")
        )
    compact = b"".join(text.split())
    if not compact:
        raise EstError(400, "the request body is empty; expected a base64 PKCS#10 request")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EstError(400, "the request body is not valid base64 (RFC 8951)") from exc
    if not der:
        raise EstError(400, "the request body decodes to nothing")
    return der


def encode_base64(der: bytes) -> bytes:
    """Return base64 with 64-character lines (what ``openssl base64 -d`` reads)."""
    raw = base64.b64encode(der)
    return b"\n".join(raw[i : i + _LINE] for i in range(0, len(raw), _LINE)) + b"\n"


def certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """Return a DER certs-only CMS SignedData (RFC 7030 §4.1.3)."""
    return pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)


def csrattrs_der(
    attrs: Sequence[est_api.CsrAttr], template: est_api.CsrTemplate | None = None
) -> bytes:
    """Return the DER CsrAttrs (RFC 7030 §4.5.2, RFC 8951 §3.5) for the label.

    With ``template`` the RFC 9908 certificationRequestInfoTemplate attribute is
    appended: clients that know it follow it, others ignore it (RFC 9908 §4).
    """
    if template is None:
        return _legacy_csrattrs(attrs)
    items = b""
    if attrs:
        legacy = _legacy_csrattrs(attrs)
        _, start, end = der.read_tlv(legacy, 0, len(legacy))
        items = legacy[start:end]
    return der.seq(items, _template_attribute(template))


def _template_attribute(t: est_api.CsrTemplate) -> bytes:
    """Return the Attribute carrying a CertificationRequestInfoTemplate (RFC 9908 §3.4).

    Every [n] is IMPLICIT; absent values (subject attribute values, the key,
    extension values) are the client's to fill in.
    """

    def oid(dotted: str) -> bytes:
        return der.wrap(0x06, der.oid(dotted))

    parts = [der.integer(0)]  # version v1
    if t.subject_types:
        # NameTemplate: one RDN per attribute, SingleAttributeTemplate { type } (no value).
        parts.append(der.seq(*(der.wrap(0x31, der.seq(oid(o))) for o in t.subject_types)))
    if t.key_algorithm is not None:
        # Parameters: the named curve for EC; NULL for rsaEncryption (RFC 3279 §2.3.1).
        params = _NULL if t.key_algorithm == _OID_RSA_ENCRYPTION else b""
        if t.key_curve is not None:
            params = oid(t.key_curve)
        # subjectPKInfo [0] IMPLICIT SubjectPublicKeyInfoTemplate { algorithm } (no key).
        parts.append(der.wrap(0xA0, der.seq(oid(t.key_algorithm), params)))
    attributes = b""
    if t.extensions:
        # id-aa-extensionReqTemplate: ExtensionTemplate { extnID } each, values left out.
        ext_templates = der.seq(*(der.seq(oid(o)) for o in t.extensions))
        attributes = der.seq(oid(_OID_EXT_REQ_TEMPLATE), der.wrap(0x31, ext_templates))
    parts.append(der.wrap(0xA1, attributes))  # attributes [1] IMPLICIT SET, always present
    return der.seq(oid(_OID_CRI_TEMPLATE), der.wrap(0x31, der.seq(*parts)))


def _legacy_csrattrs(attrs: Sequence[est_api.CsrAttr]) -> bytes:
    seq = rfc7030.CsrAttrs()
    for i, attr in enumerate(attrs):
        item = rfc7030.AttrOrOID()
        if attr.values:
            attribute = rfc5652.Attribute()
            attribute["attrType"] = univ.ObjectIdentifier(attr.oid)
            for j, value in enumerate(attr.values):
                attribute["attrValues"][j] = der_encoder.encode(univ.ObjectIdentifier(value))
            item["attribute"] = attribute
        else:
            item["oid"] = univ.ObjectIdentifier(attr.oid)
        seq[i] = item
    return bytes(der_encoder.encode(seq))


def serverkeygen_multipart(key_der: bytes, certificate: x509.Certificate) -> tuple[bytes, str]:
    """Return (body, content type) of a serverkeygen answer (RFC 7030 §4.4.2).

    Part one is the unencrypted PKCS#8 PrivateKeyInfo (protected by TLS), part
    two the certs-only PKCS#7 with the new certificate; both base64.
    """
    boundary = f"est-{secrets.token_hex(12)}"
    parts = [
        (PKCS8, key_der),
        (CERTS_ONLY, certs_only([certificate])),
    ]
    out = []
    for content_type, part in parts:
        out.append(
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + encode_base64(part).replace(b"\n", b"\r\n")
        )
    body = b"".join(out) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"
