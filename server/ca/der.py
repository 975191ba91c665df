"""The one strict DER toolkit: reading and writing the structures privca handles itself.

OCSP responses (``ocsp_codec``) and CRLs (``crl_codec``) are assembled here
rather than through cryptography's builders where those cannot express the
structure (several SingleResponses) or cost too much at scale (a million CRL
entries); the Matter validator reads certificates through ``Node`` because it
must see exactly how they are encoded (explicit DEFAULTs, string and time types,
non-minimal integers). Strict reading: low tag numbers, definite minimal
lengths, exact nesting, minimal INTEGERs, DER BOOLEANs and BIT STRINGs, and no
trailing data, so garbage is refused, never half-parsed. Every refusal is a
``MalformedError`` (``MalformedTimeError`` for times). Pure, synchronous and
stdlib only (``keys.sign`` produces the signatures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "BIT_STRING",
    "BOOLEAN",
    "CTX0",
    "CTX0_CONS",
    "CTX1",
    "CTX2",
    "CTX3_CONS",
    "GENERALIZED_TIME",
    "IA5_STRING",
    "INTEGER",
    "NULL",
    "OBJECT_ID",
    "OCTET_STRING",
    "PRINTABLE_STRING",
    "SEQUENCE",
    "SET",
    "UTC_TIME",
    "UTF8_STRING",
    "MalformedError",
    "MalformedTimeError",
    "Node",
    "children",
    "expect",
    "gtime",
    "integer",
    "is_minimal_integer",
    "length",
    "named_bits",
    "oid",
    "oid_text",
    "parse",
    "read",
    "read_boolean",
    "read_named_bits",
    "read_time",
    "read_tlv",
    "read_unsigned",
    "require",
    "seq",
    "validity_time",
    "wrap",
]

# Universal and context tags (identifier octets).
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

_UTC_RE: Final = re.compile(rb"\d{12}Z")
_GEN_RE: Final = re.compile(rb"\d{14}Z")


class MalformedError(ValueError):
    """The bytes are not the DER structure expected."""


class MalformedTimeError(MalformedError):
    """A UTCTime/GeneralizedTime is not in RFC 5280 4.1.2.5 form or not a valid date."""


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


def read(buf: bytes, pos: int, end: int) -> Node:
    """Read the element at ``pos`` (the checks of ``read_tlv``)."""
    tag, body, stop = read_tlv(buf, pos, end)
    return Node(tag, buf, pos, body, stop)


def parse(data: bytes) -> Node:
    """Parse one element that must span all of ``data``."""
    node = read(data, 0, len(data))
    if node.end != len(data):
        raise MalformedError("trailing data after the DER element")
    return node


def children(node: Node) -> list[Node]:
    """Return the elements inside a constructed element."""
    if not node.tag & 0x20:
        raise MalformedError(f"tag 0x{node.tag:02x} is not constructed")
    out = []
    pos = node.body
    while pos < node.end:
        child = read(node.buf, pos, node.end)
        out.append(child)
        pos = child.end
    return out


def require(node: Node, tag: int, what: str) -> Node:
    """Return ``node`` if it has ``tag``; raise otherwise."""
    if node.tag != tag:
        raise MalformedError(f"{what}: expected tag 0x{tag:02x}, found 0x{node.tag:02x}")
    return node


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
    content = require(node, INTEGER, what).content
    if not is_minimal_integer(content) or content[0] & 0x80:
        raise MalformedError(f"{what} is not a minimal non-negative INTEGER")
    return int.from_bytes(content, "big")


def read_boolean(node: Node, what: str) -> bool:
    """Return a BOOLEAN; DER requires 0x00 or 0xFF (X.690 11.1)."""
    content = require(node, BOOLEAN, what).content
    if content not in (b"\x00", b"\xff"):
        raise MalformedError(f"{what} is not a DER BOOLEAN")
    return content == b"\xff"


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


def read_named_bits(node: Node, what: str) -> int:
    """Return a named-bit BIT STRING as flags (bit 0 = first named bit); DER only."""
    content = require(node, BIT_STRING, what).content
    if not content or content[0] > 7 or (len(content) == 1 and content[0]):
        raise MalformedError(f"{what} is not a valid BIT STRING")
    flags = 0
    for index, octet in enumerate(content[1:]):
        for bit in range(8):
            if octet & (0x80 >> bit):
                flags |= 1 << (index * 8 + bit)
    if named_bits(flags) != node.encoded:
        raise MalformedError(f"{what} is not DER (trailing zero bits must be dropped)")
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
        raise MalformedTimeError(
            f"{what} is not a YYMMDDHHMMSSZ UTCTime or YYYYMMDDHHMMSSZ GeneralizedTime"
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
        raise MalformedTimeError(f"{what} is not a valid date") from exc


# ---------------------------------------------------------------------- writing


def oid(dotted: str) -> bytes:
    """Return the content octets of an OBJECT IDENTIFIER (base-128 arcs, X.690 8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for value in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
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
    """Return a non-negative INTEGER, minimally encoded (leading 0x00 when the top bit is set)."""
    return wrap(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def gtime(dt: datetime) -> bytes:
    """Return a GeneralizedTime (UTC, whole seconds)."""
    return wrap(GENERALIZED_TIME, dt.strftime("%Y%m%d%H%M%SZ").encode())


def validity_time(dt: datetime) -> bytes:
    """Return a validity time: UTCTime before 2050, GeneralizedTime after (RFC 5280 4.1.2.5)."""
    if dt.year >= 2050:
        return gtime(dt)
    return wrap(UTC_TIME, dt.strftime("%y%m%d%H%M%SZ").encode())


def named_bits(flags: int) -> bytes:
    """Return a named-bit BIT STRING (bit 0 = first named bit) per X.690 11.2.2."""
    if flags == 0:
        return wrap(BIT_STRING, b"\x00")
    nbits = flags.bit_length()
    octets = bytearray((nbits + 7) // 8)
    for bit in range(nbits):
        if flags >> bit & 1:
            octets[bit // 8] |= 0x80 >> (bit % 8)
    return wrap(BIT_STRING, bytes((len(octets) * 8 - nbits,)) + bytes(octets))
