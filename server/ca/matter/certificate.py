"""The fields of a DER certificate that the Matter rules and TLV codec read.

Parsed through ``server.ca.der`` rather than cryptography because the validator has
to see exactly how a certificate is encoded (explicit DEFAULT values, string types,
time types, non-minimal integers), and it runs once per DAC in bulk issuance.
Raises ``MatterError`` with ``Rule.DER`` (``Rule.VALIDITY`` for malformed times).
Imports only the standard library, ``server.ca.der`` and this package's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from server.ca import der
from server.ca.matter.errors import MatterError, Rule, from_der

__all__ = [
    "NO_EXPIRY",
    "Attribute",
    "Certificate",
    "Extension",
    "Name",
    "Time",
    "parse_certificate",
    "parse_name",
]

NO_EXPIRY: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


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
    value: der.Node
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


def _fail(detail: str) -> MatterError:
    return MatterError(Rule.DER, detail)


@from_der
def parse_name(node: der.Node, what: str) -> Name:
    """Parse an RDNSequence, keeping the exact encoding."""
    rdns = []
    for rdn in der.children(der.require(node, der.SEQUENCE, what)):
        attrs = []
        for atv in der.children(der.require(rdn, der.SET, what)):
            parts = der.children(der.require(atv, der.SEQUENCE, what))
            if len(parts) != 2:
                raise _fail(f"{what}: AttributeTypeAndValue must have two elements")
            oid = der.require(parts[0], der.OBJECT_ID, what).content
            attrs.append(Attribute(oid, parts[1].tag, parts[1].content))
        if not attrs:
            raise _fail(f"{what}: empty RelativeDistinguishedName")
        rdns.append(tuple(attrs))
    return Name(node.encoded, tuple(rdns))


def _parse_extension(node: der.Node) -> Extension:
    parts = der.children(der.require(node, der.SEQUENCE, "extension"))
    if len(parts) not in (2, 3):
        raise _fail("extension must have two or three elements")
    oid = der.require(parts[0], der.OBJECT_ID, "extension id").content
    critical = False
    explicit_false = False
    if len(parts) == 3:
        critical = der.read_boolean(parts[1], "extension critical flag")
        explicit_false = not critical
    value = der.require(parts[-1], der.OCTET_STRING, "extension value")
    return Extension(oid, critical, explicit_false, der.parse(value.content), node.encoded)


@from_der
def parse_certificate(data: bytes) -> Certificate:
    """Parse a DER certificate strictly enough for the Matter rules."""
    cert = der.children(der.require(der.parse(data), der.SEQUENCE, "certificate"))
    if len(cert) != 3:
        raise _fail("certificate must have tbsCertificate, signatureAlgorithm, signature")
    tbs_node, sig_alg, signature = cert
    fields = der.children(der.require(tbs_node, der.SEQUENCE, "tbsCertificate"))
    index = 0
    version = 0
    if fields and fields[0].tag == der.CTX0_CONS:
        inner = der.children(fields[0])
        if len(inner) != 1:
            raise _fail("version must hold one INTEGER")
        version = der.read_unsigned(inner[0], "version")
        index = 1
    rest = fields[index:]
    if len(rest) < 6:
        raise _fail("tbsCertificate is missing fields")
    serial = der.require(rest[0], der.INTEGER, "serialNumber").content
    if not der.is_minimal_integer(serial):
        raise _fail("serialNumber is not a minimally encoded INTEGER")
    validity = der.children(der.require(rest[3], der.SEQUENCE, "validity"))
    if len(validity) != 2:
        raise _fail("validity must hold notBefore and notAfter")
    spki = der.children(der.require(rest[5], der.SEQUENCE, "subjectPublicKeyInfo"))
    if len(spki) != 2:
        raise _fail("subjectPublicKeyInfo must hold algorithm and subjectPublicKey")
    alg = der.children(der.require(spki[0], der.SEQUENCE, "subjectPublicKeyInfo algorithm"))
    if not alg or len(alg) > 2:
        raise _fail("subjectPublicKeyInfo algorithm must hold an OID and optional parameters")
    has_unique_ids = False
    extensions: tuple[Extension, ...] = ()
    for extra in rest[6:]:
        if extra.tag in (der.CTX1, der.CTX2, 0xA1, 0xA2):
            has_unique_ids = True
        elif extra.tag == der.CTX3_CONS and not extensions:
            inner = der.children(extra)
            if len(inner) != 1:
                raise _fail("extensions [3] must hold one SEQUENCE")
            items = der.children(der.require(inner[0], der.SEQUENCE, "extensions"))
            if not items:
                raise _fail("extensions must not be empty")
            extensions = tuple(_parse_extension(item) for item in items)
        else:
            raise _fail(f"unexpected tbsCertificate element 0x{extra.tag:02x}")
    return Certificate(
        der=data,
        tbs=tbs_node.encoded,
        version=version,
        serial=serial,
        tbs_sig_alg=der.require(rest[1], der.SEQUENCE, "signature").encoded,
        issuer=parse_name(rest[2], "issuer"),
        not_before=Time(validity[0].tag, der.read_time(validity[0], "notBefore")),
        not_after=Time(validity[1].tag, der.read_time(validity[1], "notAfter")),
        subject=parse_name(rest[4], "subject"),
        spki_alg=der.require(alg[0], der.OBJECT_ID, "public key algorithm").content,
        spki_params=alg[1].encoded if len(alg) == 2 else b"",
        public_key=der.require(spki[1], der.BIT_STRING, "subjectPublicKey").content,
        has_unique_ids=has_unique_ids,
        extensions=extensions,
        sig_alg=der.require(sig_alg, der.SEQUENCE, "signatureAlgorithm").encoded,
        signature=der.require(signature, der.BIT_STRING, "signatureValue").content,
    )
