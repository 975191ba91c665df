"""Strict DER reading and writing for Matter certificates (internal).

A small hand-rolled reader is used instead of pyasn1 because the validator has to see
exactly how a certificate is encoded (explicit DEFAULT values, string types, time
types, non-minimal integers) and because it runs once per DAC in bulk issuance.
Stdlib only; raises ``MatterError`` with ``Rule.DER`` (or ``Rule.VALIDITY`` for
malformed times).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from server.ca import der
from server.ca.matter.errors import MatterError, Rule

# Universal tags (identifier octets).
BOOLEAN: Final = 0x01
INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OBJECT_ID: Final = 0x06
UTF8_STRING: Final = 0x0C
PRINTABLE_STRING: Final = 0x13
IA5_STRING: Final = 0x16
UTC_TIME: Final = 0x17
GENERALIZED_TIME: Final = 0x18
SEQUENCE: Final = 0x30
SET: Final = 0x31
CTX0: Final = 0x80
CTX0_CONS: Final = 0xA0
CTX1: Final = 0x81
CTX2: Final = 0x82
CTX3_CONS: Final = 0xA3

NO_EXPIRY: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_UTC_RE: Final = re.compile(rb"\d{12}Z")
_GEN_RE: Final = re.compile(rb"\d{14}Z")


@dataclass(frozen=True, slots=True)
class Node:
    """One DER element: ``buf[start:end]`` is the encoding, ``buf[body:end]`` the contents."""

    tag: int
    buf: bytes
    start: int
    body: int
    end: int

    @property
    def content(self) -> bytes:
        """Return the contents octets."""
        return self.buf[self.body : self.end]

    @property
    def encoded(self) -> bytes:
        """Return the whole encoding (identifier, length, contents)."""
        return self.buf[self.start : self.end]


def _fail(detail: str) -> MatterError:
    return MatterError(Rule.DER, detail)


def read(buf: bytes, pos: int, end: int) -> Node:
    """Read the element at ``pos``; refuse high tag numbers and non-minimal lengths."""
    try:
        tag, body, stop = der.read_tlv(buf, pos, end)
    except der.MalformedError as exc:
        raise _fail(str(exc)) from exc
    return Node(tag, buf, pos, body, stop)


def parse(data: bytes) -> Node:
    """Parse one element that must span all of ``data``."""
    node = read(data, 0, len(data))
    if node.end != len(data):
        raise _fail("trailing data after the DER element")
    return node


def children(node: Node) -> list[Node]:
    """Return the elements inside a constructed element."""
    if not node.tag & 0x20:
        raise _fail(f"tag 0x{node.tag:02x} is not constructed")
    out = []
    pos = node.body
    while pos < node.end:
        child = read(node.buf, pos, node.end)
        out.append(child)
        pos = child.end
    return out


def expect(node: Node, tag: int, what: str) -> Node:
    """Return ``node`` if it has ``tag``; raise otherwise."""
    if node.tag != tag:
        raise _fail(f"{what}: expected tag 0x{tag:02x}, found 0x{node.tag:02x}")
    return node


def encode(tag: int, content: bytes) -> bytes:
    """Encode one element with a minimal definite length."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def encode_unsigned(value: int) -> bytes:
    """Encode a non-negative INTEGER minimally (leading 0x00 when the top bit is set)."""
    return encode(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def is_minimal_integer(content: bytes) -> bool:
    """Return whether INTEGER contents are non-empty and minimally encoded (X.690 8.3.2)."""
    if not content:
        return False
    if len(content) == 1:
        return True
    return not (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    )


def read_unsigned(node: Node, what: str) -> int:
    """Return a non-negative, minimally encoded INTEGER."""
    content = expect(node, INTEGER, what).content
    if not is_minimal_integer(content) or content[0] & 0x80:
        raise _fail(f"{what} is not a minimal non-negative INTEGER")
    return int.from_bytes(content, "big")


def read_boolean(node: Node, what: str) -> bool:
    """Return a BOOLEAN; DER requires 0x00 or 0xFF."""
    content = expect(node, BOOLEAN, what).content
    if content not in (b"\x00", b"\xff"):
        raise _fail(f"{what} is not a DER BOOLEAN")
    return content == b"\xff"


def encode_oid(dotted: str) -> bytes:
    """Encode a dotted OID as a complete OBJECT IDENTIFIER element."""
    arcs = [int(arc) for arc in dotted.split(".")]
    values = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = bytearray()
    for value in values:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out.extend(reversed(chunk))
    return encode(OBJECT_ID, bytes(out))


def oid_text(content: bytes) -> str:
    """Return the dotted form of OBJECT IDENTIFIER contents (for messages)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "<empty>"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def encode_named_bits(flags: int) -> bytes:
    """Encode a named-bit BIT STRING (bit 0 = first named bit) per X.690 11.2.2."""
    if flags == 0:
        return encode(BIT_STRING, b"\x00")
    nbits = flags.bit_length()
    octets = bytearray((nbits + 7) // 8)
    for bit in range(nbits):
        if flags >> bit & 1:
            octets[bit // 8] |= 0x80 >> (bit % 8)
    return encode(BIT_STRING, bytes((len(octets) * 8 - nbits,)) + bytes(octets))


def read_named_bits(node: Node, what: str) -> int:
    """Return a named-bit BIT STRING as flags (bit 0 = first named bit); DER only."""
    content = expect(node, BIT_STRING, what).content
    if not content or content[0] > 7 or (len(content) == 1 and content[0]):
        raise _fail(f"{what} is not a valid BIT STRING")
    flags = 0
    for index, octet in enumerate(content[1:]):
        for bit in range(8):
            if octet & (0x80 >> bit):
                flags |= 1 << (index * 8 + bit)
    if encode_named_bits(flags) != node.encoded:
        raise _fail(f"{what} is not DER (trailing zero bits must be dropped)")
    return flags


def read_time(node: Node, what: str) -> datetime:
    """Return a UTCTime/GeneralizedTime in RFC 5280 4.1.2.5 form (seconds, ``Z``)."""
    raw = node.content
    if node.tag == UTC_TIME and _UTC_RE.fullmatch(raw):
        year = int(raw[0:2])
        year += 1900 if year >= 50 else 2000
        rest = raw[2:]
    elif node.tag == GENERALIZED_TIME and _GEN_RE.fullmatch(raw):
        year = int(raw[0:4])
        rest = raw[4:]
    else:
        raise MatterError(
            Rule.VALIDITY,
            f"{what} is not a YYMMDDHHMMSSZ UTCTime or YYYYMMDDHHMMSSZ GeneralizedTime",
        )
    try:
        return datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise MatterError(Rule.VALIDITY, f"{what} is not a valid date") from exc


def encode_time(when: datetime) -> bytes:
    """Encode a time as RFC 5280 requires: UTCTime before 2050, GeneralizedTime after."""
    if when.year >= 2050:
        return encode(GENERALIZED_TIME, when.strftime("%Y%m%d%H%M%SZ").encode())
    return encode(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode())


@dataclass(frozen=True, slots=True)
class Attribute:
    """One AttributeTypeAndValue: OID contents, string tag and raw string bytes."""

    oid: bytes
    string_tag: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Name:
    """A parsed Name; ``encoded`` is the exact DER, ``rdns`` keeps RDN grouping."""

    encoded: bytes
    rdns: tuple[tuple[Attribute, ...], ...]

    def attributes(self) -> list[Attribute]:
        """Return all attributes in order."""
        return [attr for rdn in self.rdns for attr in rdn]


@dataclass(frozen=True, slots=True)
class Extension:
    """One Extension; ``explicit_false`` flags a DER-forbidden ``critical FALSE``."""

    oid: bytes
    critical: bool
    explicit_false: bool
    value: Node
    encoded: bytes


@dataclass(frozen=True, slots=True)
class Time:
    """A validity time with the tag it was encoded with."""

    tag: int
    when: datetime


@dataclass(frozen=True, slots=True)
class Certificate:
    """The fields of an X.509 certificate that the Matter rules look at."""

    der: bytes
    tbs: bytes
    version: int
    serial: bytes
    tbs_sig_alg: bytes
    issuer: Name
    not_before: Time
    not_after: Time
    subject: Name
    spki_alg: bytes
    spki_params: bytes
    public_key: bytes
    has_unique_ids: bool
    extensions: tuple[Extension, ...]
    sig_alg: bytes
    signature: bytes

    def extension(self, oid: bytes) -> Extension | None:
        """Return the first extension with ``oid`` (OID contents), if any."""
        for ext in self.extensions:
            if ext.oid == oid:
                return ext
        return None


def parse_name(node: Node, what: str) -> Name:
    """Parse an RDNSequence, keeping the exact encoding."""
    rdns = []
    for rdn in children(expect(node, SEQUENCE, what)):
        attrs = []
        for atv in children(expect(rdn, SET, what)):
            parts = children(expect(atv, SEQUENCE, what))
            if len(parts) != 2:
                raise _fail(f"{what}: AttributeTypeAndValue must have two elements")
            oid = expect(parts[0], OBJECT_ID, what).content
            attrs.append(Attribute(oid, parts[1].tag, parts[1].content))
        if not attrs:
            raise _fail(f"{what}: empty RelativeDistinguishedName")
        rdns.append(tuple(attrs))
    return Name(node.encoded, tuple(rdns))


def _parse_extension(node: Node) -> Extension:
    parts = children(expect(node, SEQUENCE, "extension"))
    if len(parts) not in (2, 3):
        raise _fail("extension must have two or three elements")
    oid = expect(parts[0], OBJECT_ID, "extension id").content
    critical = False
    explicit_false = False
    if len(parts) == 3:
        critical = read_boolean(parts[1], "extension critical flag")
        explicit_false = not critical
    value = expect(parts[-1], OCTET_STRING, "extension value")
    return Extension(oid, critical, explicit_false, parse(value.content), node.encoded)


def parse_certificate(der: bytes) -> Certificate:
    """Parse a DER certificate strictly enough for the Matter rules."""
    cert = children(expect(parse(der), SEQUENCE, "certificate"))
    if len(cert) != 3:
        raise _fail("certificate must have tbsCertificate, signatureAlgorithm, signature")
    tbs_node, sig_alg, signature = cert
    fields = children(expect(tbs_node, SEQUENCE, "tbsCertificate"))
    index = 0
    version = 0
    if fields and fields[0].tag == CTX0_CONS:
        inner = children(fields[0])
        if len(inner) != 1:
            raise _fail("version must hold one INTEGER")
        version = read_unsigned(inner[0], "version")
        index = 1
    rest = fields[index:]
    if len(rest) < 6:
        raise _fail("tbsCertificate is missing fields")
    serial = expect(rest[0], INTEGER, "serialNumber").content
    if not is_minimal_integer(serial):
        raise _fail("serialNumber is not a minimally encoded INTEGER")
    validity = children(expect(rest[3], SEQUENCE, "validity"))
    if len(validity) != 2:
        raise _fail("validity must hold notBefore and notAfter")
    spki = children(expect(rest[5], SEQUENCE, "subjectPublicKeyInfo"))
    if len(spki) != 2:
        raise _fail("subjectPublicKeyInfo must hold algorithm and subjectPublicKey")
    alg = children(expect(spki[0], SEQUENCE, "subjectPublicKeyInfo algorithm"))
    if not alg or len(alg) > 2:
        raise _fail("subjectPublicKeyInfo algorithm must hold an OID and optional parameters")
    has_unique_ids = False
    extensions: tuple[Extension, ...] = ()
    for extra in rest[6:]:
        if extra.tag in (CTX1, CTX2, 0xA1, 0xA2):
            has_unique_ids = True
        elif extra.tag == CTX3_CONS and not extensions:
            inner = children(extra)
            if len(inner) != 1:
                raise _fail("extensions [3] must hold one SEQUENCE")
            items = children(expect(inner[0], SEQUENCE, "extensions"))
            if not items:
                raise _fail("extensions must not be empty")
            extensions = tuple(_parse_extension(item) for item in items)
        else:
            raise _fail(f"unexpected tbsCertificate element 0x{extra.tag:02x}")
    return Certificate(
        der=der,
        tbs=tbs_node.encoded,
        version=version,
        serial=serial,
        tbs_sig_alg=expect(rest[1], SEQUENCE, "signature").encoded,
        issuer=parse_name(rest[2], "issuer"),
        not_before=Time(validity[0].tag, read_time(validity[0], "notBefore")),
        not_after=Time(validity[1].tag, read_time(validity[1], "notAfter")),
        subject=parse_name(rest[4], "subject"),
        spki_alg=expect(alg[0], OBJECT_ID, "public key algorithm").content,
        spki_params=alg[1].encoded if len(alg) == 2 else b"",
        public_key=expect(spki[1], BIT_STRING, "subjectPublicKey").content,
        has_unique_ids=has_unique_ids,
        extensions=extensions,
        sig_alg=expect(sig_alg, SEQUENCE, "signatureAlgorithm").encoded,
        signature=expect(signature, BIT_STRING, "signatureValue").content,
    )
