"""Matter TLV certificate encoding (Matter Core Specification 6.5, "Matter certificate").

Converts X.509 DER to the compact Matter TLV form and back, the way connectedhomeip's
``ConvertX509CertToChipCert`` (src/credentials/CHIPCertFromX509.cpp) and
``ConvertChipCertToX509Cert`` (CHIPCertToX509.cpp) do. Devices store and send NOC, ICAC
and RCAC in TLV form and check signatures over the X.509 TBS rebuilt from TLV, so a
certificate is only usable if ``tlv_to_x509(x509_to_tlv(der)) == der``: run
``check_round_trip`` on every operational certificate before handing it out.

Imports only the standard library, ``server.ca.der`` and this package (no engine module).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from server.ca import der
from server.ca.matter import certificate, oids
from server.ca.matter.errors import MatterError, Rule, from_der

__all__ = [
    "MAX_DER_LENGTH",
    "MAX_TLV_LENGTH",
    "check_round_trip",
    "tlv_to_x509",
    "x509_to_tlv",
]

MAX_TLV_LENGTH: Final = 400  # kMaxCHIPCertLength (src/credentials/CHIPCert.h)
MAX_DER_LENGTH: Final = 600  # kMaxDERCertLength


# OID enum values from src/lib/asn1/ASN1OID.h (the low byte doubles as the TLV tag number).
ATTRIBUTE_ENUMS: Final[dict[bytes, int]] = {
    der.oid("2.5.4.3"): 1,  # commonName
    der.oid("2.5.4.4"): 2,  # surname
    der.oid("2.5.4.5"): 3,  # serialNumber
    der.oid("2.5.4.6"): 4,  # countryName
    der.oid("2.5.4.7"): 5,  # localityName
    der.oid("2.5.4.8"): 6,  # stateOrProvinceName
    der.oid("2.5.4.10"): 7,  # organizationName
    der.oid("2.5.4.11"): 8,  # organizationalUnitName
    der.oid("2.5.4.12"): 9,  # title
    der.oid("2.5.4.41"): 10,  # name
    der.oid("2.5.4.42"): 11,  # givenName
    der.oid("2.5.4.43"): 12,  # initials
    der.oid("2.5.4.44"): 13,  # generationQualifier
    der.oid("2.5.4.46"): 14,  # dnQualifier
    der.oid("2.5.4.65"): 15,  # pseudonym
    der.oid("0.9.2342.19200300.100.1.25"): 16,  # domainComponent
    der.oid(oids.NODE_ID.dotted_string): 17,  # matter-node-id
    der.oid(oids.FIRMWARE_SIGNING_ID.dotted_string): 18,  # matter-firmware-signing-id
    der.oid(oids.ICAC_ID.dotted_string): 19,  # matter-icac-id
    der.oid(oids.RCAC_ID.dotted_string): 20,  # matter-rcac-id
    der.oid(oids.FABRIC_ID.dotted_string): 21,  # matter-fabric-id
    der.oid(oids.CASE_AUTH_TAG.dotted_string): 22,  # matter-noc-cat
}
_ATTRIBUTE_OIDS: Final = {enum: oid for oid, enum in ATTRIBUTE_ENUMS.items()}
DOMAIN_COMPONENT: Final = 16
NODE_ID: Final = 17
FABRIC_ID: Final = 21
CASE_AUTH_TAG: Final = 22
MATTER_64BIT_ATTRIBUTES: Final = frozenset({17, 18, 19, 20, 21})
MATTER_32BIT_ATTRIBUTES: Final = frozenset({CASE_AUTH_TAG})
MAX_RDN_ATTRIBUTES: Final = 5  # CHIP_CONFIG_CERT_MAX_RDN_ATTRIBUTES
MAX_OPERATIONAL_NODE_ID: Final = 0xFFFF_FFEF_FFFF_FFFF  # kMaxOperationalNodeId

_PURPOSE_ENUMS: Final[dict[bytes, int]] = {
    der.oid("1.3.6.1.5.5.7.3.1"): 1,  # serverAuth
    der.oid("1.3.6.1.5.5.7.3.2"): 2,  # clientAuth
    der.oid("1.3.6.1.5.5.7.3.3"): 3,  # codeSigning
    der.oid("1.3.6.1.5.5.7.3.4"): 4,  # emailProtection
    der.oid("1.3.6.1.5.5.7.3.8"): 5,  # timeStamping
    der.oid("1.3.6.1.5.5.7.3.9"): 6,  # OCSPSigning
}
_PURPOSE_OIDS: Final = {enum: oid for oid, enum in _PURPOSE_ENUMS.items()}

EXT_BASIC_CONSTRAINTS: Final = der.oid("2.5.29.19")
EXT_KEY_USAGE: Final = der.oid("2.5.29.15")
EXT_EXTENDED_KEY_USAGE: Final = der.oid("2.5.29.37")
EXT_SUBJECT_KEY_ID: Final = der.oid("2.5.29.14")
EXT_AUTHORITY_KEY_ID: Final = der.oid("2.5.29.35")
# Known to the SDK's OID table but not a convertible extension: its TLV decoder refuses
# it as a "future extension", so it cannot round-trip.
_EXT_CSR_REQUEST: Final = der.oid("1.2.840.113549.1.9.14")

ECDSA_WITH_SHA256: Final = der.wrap(
    der.SEQUENCE, der.wrap(der.OBJECT_ID, der.oid("1.2.840.10045.4.3.2"))
)
EC_PUBLIC_KEY: Final = der.oid("1.2.840.10045.2.1")
PRIME256V1: Final = der.wrap(der.OBJECT_ID, der.oid("1.2.840.10045.3.1.7"))
KEY_USAGE_MASK: Final = 0x01FF  # digitalSignature .. decipherOnly
KEY_ID_LENGTH: Final = 20
_CHIP_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_SPKI_ALGORITHM: Final = der.wrap(der.SEQUENCE, der.wrap(der.OBJECT_ID, EC_PUBLIC_KEY) + PRIME256V1)
_VERSION_3: Final = der.wrap(der.CTX0_CONS, der.integer(2))
_TRUE: Final = der.wrap(der.BOOLEAN, b"\xff")

# Matter TLV element types (src/lib/core/TLVTypes.h) and tag control.
_CONTEXT_TAG: Final = 0x20
_UINT8: Final = 0x04
_BOOL_FALSE: Final = 0x08
_UTF8_1: Final = 0x0C
_BYTES_1: Final = 0x10
_STRUCTURE: Final = 0x15
_ARRAY: Final = 0x16
_LIST: Final = 0x17
_END: Final = b"\x18"
# Decoded kinds.
_K_INT: Final = 1
_K_BOOL: Final = 2
_K_UTF8: Final = 3
_K_BYTES: Final = 4
_K_NULL: Final = 5


def _tlv_error(detail: str) -> MatterError:
    return MatterError(Rule.TLV, detail)


# ---------------------------------------------------------------- TLV writing


def _control(tag: int | None, element_type: int) -> bytes:
    if tag is None:
        return bytes((element_type,))
    return bytes((_CONTEXT_TAG | element_type, tag))


def _put_uint(tag: int | None, value: int) -> bytes:
    # TLVWriter::Put(Tag, uint64_t) picks the smallest width, and so must we.
    if value < 0x100:
        return _control(tag, _UINT8) + bytes((value,))
    if value < 0x1_0000:
        return _control(tag, _UINT8 + 1) + value.to_bytes(2, "little")
    if value < 0x1_0000_0000:
        return _control(tag, _UINT8 + 2) + value.to_bytes(4, "little")
    return _control(tag, _UINT8 + 3) + value.to_bytes(8, "little")


def _put_octets(tag: int | None, data: bytes, base: int) -> bytes:
    size = len(data)
    if size < 0x100:
        return _control(tag, base) + bytes((size,)) + data
    return _control(tag, base + 1) + size.to_bytes(2, "little") + data


def _put_bool(tag: int | None, value: bool) -> bytes:
    return _control(tag, _BOOL_FALSE + int(value))


# ---------------------------------------------------------------- TLV reading


@dataclass(frozen=True, slots=True)
class _Element:
    tag: int | None
    kind: int
    number: int = 0
    data: bytes = b""
    items: tuple[_Element, ...] = ()


def _read_elements(buf: bytes, pos: int, *, nested: bool) -> tuple[list[_Element], int]:
    items: list[_Element] = []
    end = len(buf)
    while True:
        if pos >= end:
            if nested:
                raise _tlv_error("unterminated TLV container")
            return items, pos
        control = buf[pos]
        pos += 1
        form, element_type = control >> 5, control & 0x1F
        if element_type == 0x18:
            if form or not nested:
                raise _tlv_error("unexpected TLV end-of-container")
            return items, pos
        tag: int | None = None
        if form == 1:
            if pos >= end:
                raise _tlv_error("truncated TLV tag")
            tag = buf[pos]
            pos += 1
        elif form:
            raise _tlv_error("only anonymous and context-specific TLV tags occur in certificates")
        if element_type <= 0x07:
            width = 1 << (element_type & 3)
            if pos + width > end:
                raise _tlv_error("truncated TLV integer")
            number = int.from_bytes(buf[pos : pos + width], "little", signed=element_type < 4)
            items.append(_Element(tag, _K_INT, number=number))
            pos += width
        elif element_type in (0x08, 0x09):
            items.append(_Element(tag, _K_BOOL, number=element_type - 0x08))
        elif 0x0C <= element_type <= 0x13:
            width = 1 << (element_type & 3)
            if pos + width > end:
                raise _tlv_error("truncated TLV length")
            size = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
            if pos + size > end:
                raise _tlv_error("truncated TLV string")
            kind = _K_UTF8 if element_type < 0x10 else _K_BYTES
            items.append(_Element(tag, kind, data=buf[pos : pos + size]))
            pos += size
        elif element_type == 0x14:
            items.append(_Element(tag, _K_NULL))
        elif element_type in (_STRUCTURE, _ARRAY, _LIST):
            inner, pos = _read_elements(buf, pos, nested=True)
            items.append(_Element(tag, element_type, items=tuple(inner)))
        else:
            raise _tlv_error(
                f"TLV element type 0x{element_type:02x} does not occur in certificates"
            )


class _Fields:
    """Walks a container's elements in the fixed order the SDK decoder expects."""

    def __init__(self, items: tuple[_Element, ...], what: str) -> None:
        self._items = items
        self._next = 0
        self._what = what

    def take(self, tag: int, kind: int, what: str) -> _Element:
        if self._next >= len(self._items):
            raise _tlv_error(f"{self._what}: missing {what} (context tag {tag})")
        element = self._items[self._next]
        if element.tag != tag or element.kind != kind:
            raise _tlv_error(f"{self._what}: expected {what} (context tag {tag})")
        self._next += 1
        return element

    def peek_tag(self) -> int | None:
        return self._items[self._next].tag if self._next < len(self._items) else None

    def finish(self) -> None:
        if self._next != len(self._items):
            raise _tlv_error(f"{self._what}: unexpected element after the last field")


# ---------------------------------------------------------------- X.509 -> TLV


def _is_upper_hex(value: bytes) -> bool:
    return all(48 <= c <= 57 or 65 <= c <= 70 for c in value)


def matter_attribute_value(attr: certificate.Attribute, enum: int) -> int:
    """Return a Matter DN attribute's number; its string must be UTF8String uppercase hex."""
    digits = 16 if enum in MATTER_64BIT_ATTRIBUTES else 8
    if (
        attr.string_tag != der.UTF8_STRING
        or len(attr.value) != digits
        or not _is_upper_hex(attr.value)
    ):
        raise MatterError(
            Rule.DN_VALUE,
            f"attribute {der.oid_text(attr.oid)} must be a UTF8String of {digits} uppercase "
            f"hex digits, not {attr.value!r}",
        )
    return int(attr.value, 16)


def _dn_to_tlv(name: certificate.Name, tag: int, what: str) -> bytes:
    out = bytearray(_control(tag, _LIST))
    count = 0
    for rdn in name.rdns:
        if len(rdn) != 1:
            raise MatterError(Rule.DN, f"{what}: multi-valued RDNs have no Matter TLV form")
        attr = rdn[0]
        count += 1
        enum = ATTRIBUTE_ENUMS.get(attr.oid)
        if enum is None:
            raise MatterError(
                Rule.DN,
                f"{what}: attribute {der.oid_text(attr.oid)} has no Matter TLV form",
            )
        if enum in MATTER_64BIT_ATTRIBUTES or enum in MATTER_32BIT_ATTRIBUTES:
            value = matter_attribute_value(attr, enum)
            check_operational_value(enum, value, what)
            out += _put_uint(enum, value)
            continue
        if enum == DOMAIN_COMPONENT:
            if attr.string_tag != der.IA5_STRING:
                raise MatterError(Rule.DN, f"{what}: domainComponent must be an IA5String")
        elif attr.string_tag == der.PRINTABLE_STRING:
            enum |= 0x80
        elif attr.string_tag != der.UTF8_STRING:
            raise MatterError(
                Rule.DN,
                f"{what}: attribute {der.oid_text(attr.oid)} must be a UTF8String or "
                "PrintableString",
            )
        out += _put_octets(enum, attr.value, _UTF8_1)
    if count > MAX_RDN_ATTRIBUTES:
        raise MatterError(
            Rule.DN, f"{what}: {count} attributes, Matter allows at most {MAX_RDN_ATTRIBUTES}"
        )
    return bytes(out + _END)


def check_operational_value(enum: int, value: int, what: str) -> None:
    """Apply the SDK's value checks on node id, fabric id and CAT (ChipDN::DecodeFromASN1)."""
    if enum == NODE_ID and not 1 <= value <= MAX_OPERATIONAL_NODE_ID:
        raise MatterError(
            Rule.NOC_NODE_ID, f"{what}: node id 0x{value:016X} is not an operational node id"
        )
    if enum == FABRIC_ID and value == 0:
        raise MatterError(Rule.FABRIC_ID, f"{what}: fabric id 0 is reserved")
    if enum == CASE_AUTH_TAG and value & 0xFFFF == 0:
        raise MatterError(Rule.NOC_CAT_VERSION, f"{what}: CAT 0x{value:08X} has version 0")


def time_to_epoch(time: certificate.Time, what: str) -> int:
    """Return Matter epoch seconds (99991231235959Z is 0, "no well-defined expiry")."""
    when = time.when
    expected = der.GENERALIZED_TIME if when.year >= 2050 else der.UTC_TIME
    if time.tag != expected:
        raise MatterError(
            Rule.VALIDITY,
            f"{what} must be a UTCTime before 2050 and a GeneralizedTime from 2050 "
            "(RFC 5280 4.1.2.5)",
        )
    if when == certificate.NO_EXPIRY:
        return 0
    seconds = int((when - _CHIP_EPOCH).total_seconds())
    if seconds <= 0:
        raise MatterError(
            Rule.VALIDITY,
            f"{what} {when:%Y-%m-%dT%H:%M:%SZ} must be after the Matter epoch 2000-01-01T00:00:00Z",
        )
    if seconds > 0xFFFF_FFFF:
        raise MatterError(Rule.VALIDITY, f"{what} is beyond the Matter epoch range (2136)")
    return seconds


def _time_from_epoch(seconds: int) -> bytes:
    if seconds == 0:
        return der.validity_time(certificate.NO_EXPIRY)
    return der.validity_time(_CHIP_EPOCH + timedelta(seconds=seconds))


def _basic_constraints(ext: certificate.Extension) -> tuple[bool, int | None]:
    parts = der.children(der.require(ext.value, der.SEQUENCE, "basicConstraints"))
    is_ca = False
    path_len = None
    index = 0
    if parts and parts[0].tag == der.BOOLEAN:
        is_ca = der.read_boolean(parts[0], "basicConstraints cA")
        if not is_ca:
            raise MatterError(Rule.DER, "basicConstraints cA FALSE must be omitted (DER DEFAULT)")
        index = 1
    if index < len(parts):
        path_len = der.read_unsigned(parts[index], "basicConstraints pathLenConstraint")
        index += 1
    if index != len(parts):
        raise MatterError(Rule.DER, "basicConstraints has unexpected elements")
    return is_ca, path_len


@from_der
def parse_basic_constraints(ext: certificate.Extension) -> tuple[bool, int | None]:
    """Return (cA, pathLenConstraint) of a basicConstraints extension."""
    return _basic_constraints(ext)


@from_der
def parse_key_id(ext: certificate.Extension) -> bytes:
    """Return the SKI value (an OCTET STRING)."""
    return der.require(ext.value, der.OCTET_STRING, "subjectKeyIdentifier").content


@from_der
def parse_authority_key_id(ext: certificate.Extension) -> tuple[bytes | None, bool]:
    """Return (keyIdentifier, has authorityCertIssuer/SerialNumber) of an AKI."""
    key_id = None
    other = False
    for part in der.children(der.require(ext.value, der.SEQUENCE, "authorityKeyIdentifier")):
        if part.tag == der.CTX0 and key_id is None:
            key_id = part.content
        else:
            other = True
    return key_id, other


@from_der
def parse_extended_key_usage(ext: certificate.Extension) -> list[bytes]:
    """Return the KeyPurposeId OID contents of an extendedKeyUsage extension."""
    purposes = der.children(der.require(ext.value, der.SEQUENCE, "extendedKeyUsage"))
    if not purposes:
        raise MatterError(Rule.DER, "extendedKeyUsage must not be empty")
    return [der.require(p, der.OBJECT_ID, "KeyPurposeId").content for p in purposes]


def _extension_to_tlv(ext: certificate.Extension) -> bytes:
    if ext.explicit_false:
        raise MatterError(Rule.DER, "extension critical FALSE must be omitted (DER DEFAULT)")
    oid = ext.oid
    if oid == EXT_BASIC_CONSTRAINTS:
        if not ext.critical:
            raise MatterError(Rule.BASIC_CONSTRAINTS, "basicConstraints must be critical")
        is_ca, path_len = _basic_constraints(ext)
        if path_len is not None and (not is_ca or path_len > 0xFF):
            raise MatterError(
                Rule.BASIC_CONSTRAINTS, "pathLenConstraint needs cA TRUE and must be 0-255"
            )
        body = _put_bool(1, is_ca) + (b"" if path_len is None else _put_uint(2, path_len))
        return _control(1, _STRUCTURE) + body + _END
    if oid == EXT_KEY_USAGE:
        if not ext.critical:
            raise MatterError(Rule.KEY_USAGE, "keyUsage must be critical")
        flags = der.read_named_bits(ext.value, "keyUsage")
        if flags & ~KEY_USAGE_MASK:
            raise MatterError(Rule.KEY_USAGE, "keyUsage has bits beyond decipherOnly")
        return _put_uint(2, flags)
    if oid == EXT_EXTENDED_KEY_USAGE:
        if not ext.critical:
            raise MatterError(Rule.EKU, "extendedKeyUsage must be critical in Matter TLV form")
        out = bytearray(_control(3, _ARRAY))
        for purpose in parse_extended_key_usage(ext):
            enum = _PURPOSE_ENUMS.get(purpose)
            if enum is None:
                raise MatterError(
                    Rule.EKU, f"key purpose {der.oid_text(purpose)} has no Matter TLV form"
                )
            out += _put_uint(None, enum)
        return bytes(out + _END)
    if oid == EXT_SUBJECT_KEY_ID:
        key_id = parse_key_id(ext)
        if ext.critical or len(key_id) != KEY_ID_LENGTH:
            raise MatterError(Rule.SKI, "subjectKeyIdentifier must be non-critical and 20 bytes")
        return _put_octets(4, key_id, _BYTES_1)
    if oid == EXT_AUTHORITY_KEY_ID:
        aki, other = parse_authority_key_id(ext)
        if ext.critical or other or aki is None or len(aki) != KEY_ID_LENGTH:
            raise MatterError(
                Rule.AKI,
                "authorityKeyIdentifier must be non-critical with only a 20-byte keyIdentifier",
            )
        return _put_octets(5, aki, _BYTES_1)
    if oid == _EXT_CSR_REQUEST:
        raise _tlv_error("extension 1.2.840.113549.1.9.14 has no Matter TLV form")
    if ext.critical:
        raise MatterError(
            Rule.EXT_CRITICAL,
            f"critical extension {der.oid_text(oid)} cannot be carried as a Matter "
            "future-extension (devices refuse it)",
        )
    return _put_octets(6, ext.encoded, _BYTES_1)


@from_der
def signature_to_raw(signature: bytes) -> bytes:
    """Return r||s (64 bytes) from a signatureValue BIT STRING's contents."""
    if not signature or signature[0] != 0:
        raise MatterError(Rule.DER, "signatureValue must have no unused bits")
    parts = der.children(der.require(der.parse(signature[1:]), der.SEQUENCE, "ECDSA-Sig-Value"))
    if len(parts) != 2:
        raise MatterError(Rule.DER, "ECDSA-Sig-Value must hold r and s")
    raw = b""
    for part in parts:
        value = der.read_unsigned(part, "ECDSA-Sig-Value integer")
        if value.bit_length() > 256:
            raise MatterError(Rule.SIG_ALG, "signature is not a P-256 ECDSA signature")
        raw += value.to_bytes(32, "big")
    return raw


def _signature_from_raw(raw: bytes) -> bytes:
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    sig = der.wrap(der.SEQUENCE, der.integer(r) + der.integer(s))
    return der.wrap(der.BIT_STRING, b"\x00" + sig)


@from_der
def x509_to_tlv(encoded: bytes) -> bytes:
    """Convert an X.509 DER certificate to its Matter TLV form.

    Raises:
        MatterError: naming the rule when the certificate has no faithful TLV form
            (DN attribute or string type without a TLV tag, critical unknown extension,
            explicit DEFAULT values, more than 400 B of TLV or 600 B of DER, ...).
    """
    if len(encoded) > MAX_DER_LENGTH:
        raise MatterError(
            Rule.DER_SIZE, f"certificate is {len(encoded)} bytes of DER, at most 600 allowed"
        )
    return _certificate_to_tlv(certificate.parse_certificate(encoded))


def _certificate_to_tlv(cert: certificate.Certificate) -> bytes:
    if cert.version != 2:
        raise MatterError(Rule.VERSION, f"X.509 version {cert.version + 1}, Matter needs v3")
    if not cert.serial or cert.serial[0] & 0x80 or len(cert.serial) > 20:
        raise MatterError(Rule.SERIAL, "serialNumber must be positive and at most 20 octets")
    if cert.tbs_sig_alg != ECDSA_WITH_SHA256 or cert.sig_alg != ECDSA_WITH_SHA256:
        raise MatterError(Rule.SIG_ALG, "signature algorithm must be ecdsa-with-SHA256")
    out = bytearray(b"\x15")
    out += _put_octets(1, cert.serial, _BYTES_1)
    out += _put_uint(2, 1)
    out += _dn_to_tlv(cert.issuer, 3, "issuer")
    out += _put_uint(4, time_to_epoch(cert.not_before, "notBefore"))
    out += _put_uint(5, time_to_epoch(cert.not_after, "notAfter"))
    out += _dn_to_tlv(cert.subject, 6, "subject")
    if (
        cert.spki_alg != EC_PUBLIC_KEY
        or cert.spki_params != PRIME256V1
        or len(cert.public_key) != 66
        or cert.public_key[:2] != b"\x00\x04"
    ):
        raise MatterError(Rule.CURVE, "public key must be an uncompressed P-256 point")
    out += _put_uint(7, 1) + _put_uint(8, 1) + _put_octets(9, cert.public_key[1:], _BYTES_1)
    if cert.has_unique_ids:
        raise MatterError(Rule.UNIQUE_ID, "issuerUniqueID/subjectUniqueID have no TLV form")
    if not cert.extensions:
        raise _tlv_error("a certificate without extensions has no Matter TLV form")
    out += _control(10, _LIST)
    for ext in cert.extensions:
        out += _extension_to_tlv(ext)
    out += _END
    out += _put_octets(11, signature_to_raw(cert.signature), _BYTES_1)
    out += _END
    if len(out) > MAX_TLV_LENGTH:
        raise MatterError(
            Rule.TLV_SIZE, f"Matter TLV form is {len(out)} bytes, at most 400 allowed"
        )
    return bytes(out)


# ---------------------------------------------------------------- TLV -> X.509


def _dn_from_tlv(element: _Element, what: str) -> bytes:
    out = bytearray()
    for item in element.items:
        if item.tag is None:
            raise _tlv_error(f"{what}: DN attributes need context tags")
        enum = item.tag & 0x7F
        oid = _ATTRIBUTE_OIDS.get(enum)
        if oid is None:
            raise MatterError(Rule.DN, f"{what}: TLV attribute tag {item.tag} is unknown")
        if enum in MATTER_64BIT_ATTRIBUTES or enum in MATTER_32BIT_ATTRIBUTES:
            if item.kind != _K_INT or item.tag & 0x80 or item.number < 0:
                raise _tlv_error(f"{what}: Matter attribute {enum} must be an unsigned integer")
            digits = 16 if enum in MATTER_64BIT_ATTRIBUTES else 8
            if item.number >= 1 << (4 * digits):
                raise _tlv_error(f"{what}: Matter attribute {enum} is too large")
            check_operational_value(enum, item.number, what)
            value = f"{item.number:0{digits}X}".encode()
            string_tag = der.UTF8_STRING
        else:
            if item.kind != _K_UTF8:
                raise _tlv_error(f"{what}: attribute {enum} must be a UTF-8 string")
            value = item.data
            if enum == DOMAIN_COMPONENT:
                string_tag = der.IA5_STRING
            elif item.tag & 0x80:
                string_tag = der.PRINTABLE_STRING
            else:
                string_tag = der.UTF8_STRING
        atv = der.wrap(der.OBJECT_ID, oid) + der.wrap(string_tag, value)
        out += der.wrap(der.SET, der.wrap(der.SEQUENCE, atv))
    if len(element.items) > MAX_RDN_ATTRIBUTES:
        raise MatterError(Rule.DN, f"{what}: more than {MAX_RDN_ATTRIBUTES} attributes")
    return der.wrap(der.SEQUENCE, bytes(out))


def _extension(oid: bytes, value: bytes, *, critical: bool) -> bytes:
    body = der.wrap(der.OBJECT_ID, oid) + (_TRUE if critical else b"")
    return der.wrap(der.SEQUENCE, body + der.wrap(der.OCTET_STRING, value))


def _extension_from_tlv(item: _Element) -> bytes:
    if item.tag == 1 and item.kind == _STRUCTURE:
        fields = _Fields(item.items, "basicConstraints")
        is_ca = bool(fields.take(1, _K_BOOL, "cA").number)
        path_len = None
        if fields.peek_tag() == 2:
            path_len = fields.take(2, _K_INT, "pathLenConstraint").number
            if not is_ca or not 0 <= path_len <= 0xFF:
                raise MatterError(
                    Rule.BASIC_CONSTRAINTS, "pathLenConstraint needs cA TRUE and must be 0-255"
                )
        fields.finish()
        body = (_TRUE if is_ca else b"") + (b"" if path_len is None else der.integer(path_len))
        value = der.wrap(der.SEQUENCE, body)
        return _extension(EXT_BASIC_CONSTRAINTS, value, critical=True)
    if item.tag == 2 and item.kind == _K_INT:
        if not 0 <= item.number <= KEY_USAGE_MASK:
            raise MatterError(Rule.KEY_USAGE, "keyUsage has unsupported bits")
        return _extension(EXT_KEY_USAGE, der.named_bits(item.number), critical=True)
    if item.tag == 3 and item.kind == _ARRAY:
        purposes = bytearray()
        for purpose in item.items:
            oid = _PURPOSE_OIDS.get(purpose.number) if purpose.kind == _K_INT else None
            if purpose.tag is not None or oid is None:
                raise MatterError(Rule.EKU, "extendedKeyUsage holds an unknown key purpose")
            purposes += der.wrap(der.OBJECT_ID, oid)
        if not purposes:
            raise MatterError(Rule.EKU, "extendedKeyUsage must not be empty")
        value = der.wrap(der.SEQUENCE, bytes(purposes))
        return _extension(EXT_EXTENDED_KEY_USAGE, value, critical=True)
    if item.tag == 4 and item.kind == _K_BYTES:
        if len(item.data) != KEY_ID_LENGTH:
            raise MatterError(Rule.SKI, "subjectKeyIdentifier must be 20 bytes")
        value = der.wrap(der.OCTET_STRING, item.data)
        return _extension(EXT_SUBJECT_KEY_ID, value, critical=False)
    if item.tag == 5 and item.kind == _K_BYTES:
        if len(item.data) != KEY_ID_LENGTH:
            raise MatterError(Rule.AKI, "authorityKeyIdentifier must be 20 bytes")
        value = der.wrap(der.SEQUENCE, der.wrap(der.CTX0, item.data))
        return _extension(EXT_AUTHORITY_KEY_ID, value, critical=False)
    if item.tag == 6 and item.kind == _K_BYTES:
        node = der.parse(item.data)
        parts = der.children(der.require(node, der.SEQUENCE, "future extension"))
        oid = der.require(parts[0], der.OBJECT_ID, "future extension id").content
        known = (EXT_BASIC_CONSTRAINTS, EXT_KEY_USAGE, EXT_EXTENDED_KEY_USAGE)
        if oid in (*known, EXT_SUBJECT_KEY_ID, EXT_AUTHORITY_KEY_ID, _EXT_CSR_REQUEST):
            raise _tlv_error("a future extension must not carry a natively encoded extension")
        return item.data
    raise _tlv_error(f"unknown TLV certificate extension (context tag {item.tag})")


@from_der
def tlv_to_x509(tlv: bytes) -> bytes:
    """Rebuild the exact X.509 DER of a Matter TLV certificate.

    The raw r||s signature is re-encoded as a DER ECDSA-Sig-Value.

    Raises:
        MatterError: ``matter-tlv`` for malformed TLV, or the rule a field breaks.
    """
    if len(tlv) > MAX_TLV_LENGTH:
        raise MatterError(Rule.TLV_SIZE, f"Matter TLV form is {len(tlv)} bytes, at most 400")
    top, _ = _read_elements(tlv, 0, nested=False)
    if len(top) != 1 or top[0].tag is not None or top[0].kind != _STRUCTURE:
        raise _tlv_error("a Matter certificate is one anonymous TLV structure")
    fields = _Fields(top[0].items, "certificate")
    serial = fields.take(1, _K_BYTES, "serial number").data
    if not serial or len(serial) > 20:
        raise MatterError(Rule.SERIAL, "serial number must be 1-20 octets")
    if fields.take(2, _K_INT, "signature algorithm").number != 1:
        raise MatterError(Rule.SIG_ALG, "signature algorithm must be ecdsa-with-SHA256 (1)")
    issuer = _dn_from_tlv(fields.take(3, _LIST, "issuer"), "issuer")
    not_before = fields.take(4, _K_INT, "notBefore").number
    not_after = fields.take(5, _K_INT, "notAfter").number
    if not 0 <= not_before <= 0xFFFF_FFFF or not 0 <= not_after <= 0xFFFF_FFFF:
        raise MatterError(Rule.VALIDITY, "validity times must be 32-bit Matter epoch seconds")
    subject = _dn_from_tlv(fields.take(6, _LIST, "subject"), "subject")
    if fields.take(7, _K_INT, "public key algorithm").number != 1:
        raise MatterError(Rule.CURVE, "public key algorithm must be EC (1)")
    if fields.take(8, _K_INT, "elliptic curve").number != 1:
        raise MatterError(Rule.CURVE, "elliptic curve must be prime256v1 (1)")
    point = fields.take(9, _K_BYTES, "public key").data
    if len(point) != 65 or point[0] != 4:
        raise MatterError(Rule.CURVE, "public key must be an uncompressed P-256 point")
    extensions = b"".join(
        _extension_from_tlv(item) for item in fields.take(10, _LIST, "extensions").items
    )
    signature = fields.take(11, _K_BYTES, "signature").data
    if len(signature) != 64:
        raise MatterError(Rule.SIG_ALG, "signature must be 64 bytes of r||s")
    fields.finish()
    spki = _SPKI_ALGORITHM + der.wrap(der.BIT_STRING, b"\x00" + point)
    tbs = der.wrap(
        der.SEQUENCE,
        _VERSION_3
        + der.wrap(der.INTEGER, serial)
        + ECDSA_WITH_SHA256
        + issuer
        + der.wrap(der.SEQUENCE, _time_from_epoch(not_before) + _time_from_epoch(not_after))
        + subject
        + der.wrap(der.SEQUENCE, spki)
        + der.wrap(der.CTX3_CONS, der.wrap(der.SEQUENCE, extensions)),
    )
    encoded = der.wrap(der.SEQUENCE, tbs + ECDSA_WITH_SHA256 + _signature_from_raw(signature))
    if len(encoded) > MAX_DER_LENGTH:
        raise MatterError(Rule.DER_SIZE, f"rebuilt DER is {len(encoded)} bytes, at most 600")
    return encoded


def check_round_trip(encoded: bytes) -> bytes:
    """Convert to TLV and back, require identical DER, and return the TLV form.

    Raises:
        MatterError: the conversion's rule, or ``matter-tlv-round-trip`` when the rebuilt
            DER differs (devices would then fail the signature check).
    """
    tlv = x509_to_tlv(encoded)
    rebuilt = tlv_to_x509(tlv)
    if rebuilt != encoded:
        offset = next(
            (i for i, (a, b) in enumerate(zip(rebuilt, encoded, strict=False)) if a != b),
            min(len(rebuilt), len(encoded)),
        )
        raise MatterError(
            Rule.TLV_ROUND_TRIP,
            f"DER rebuilt from Matter TLV differs from the original at byte {offset}",
        )
    return tlv
