"""Matter certificate profile validator (Matter Core Specification 6.2.2 and 6.5).

Owns the per-kind rules for PAA, PAI, DAC, RCAC, ICAC and NOC, the issuer/child rules
and whole-chain rules, and VID/PID extraction (with the Common Name fallback of 6.2.2.2).
Every check raises ``MatterError`` naming the first rule broken; ``Rule`` lists them.
Sources are cited in shared/matter-profiles.md (connectedhomeip
``VerifyAttestationCertificateFormat``, ``ChipCertificateSet::ValidateCert``,
``ExtractVIDPIDFromX509Cert``, ``IsCertificateValidAtIssuance``).

Imports only cryptography, the standard library and this package.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from server.ca import der
from server.ca.matter import certificate, oids, tlv
from server.ca.matter.errors import MatterError, Rule, from_der

__all__ = [
    "Checked",
    "MatterKind",
    "OperationalIds",
    "VidPid",
    "check_cats",
    "check_der",
    "check_pair",
    "extract_operational_ids",
    "extract_vid_pid",
    "infer_kind",
    "load_certificate",
    "validate_certificate",
    "validate_chain",
]


class MatterKind(StrEnum):
    """The six Matter certificate kinds."""

    PAA = "paa"
    PAI = "pai"
    DAC = "dac"
    RCAC = "rcac"
    ICAC = "icac"
    NOC = "noc"

    @property
    def is_operational(self) -> bool:
        """Return whether the kind belongs to the operational PKI (RCAC, ICAC, NOC)."""
        return self in _OPERATIONAL


_OPERATIONAL: Final = frozenset({MatterKind.RCAC, MatterKind.ICAC, MatterKind.NOC})
# Issuer kinds, nearest first, of each complete chain shape (leaf excluded).
_CHAIN_SHAPES: Final[dict[MatterKind, tuple[tuple[MatterKind, ...], ...]]] = {
    MatterKind.PAA: ((),),
    MatterKind.PAI: ((MatterKind.PAA,),),
    MatterKind.DAC: ((MatterKind.PAI, MatterKind.PAA),),
    MatterKind.RCAC: ((),),
    MatterKind.ICAC: ((MatterKind.RCAC,),),
    MatterKind.NOC: ((MatterKind.ICAC, MatterKind.RCAC), (MatterKind.RCAC,)),
}


def _oid(oid: x509.ObjectIdentifier) -> bytes:
    return der.oid(oid.dotted_string)


_VID: Final = _oid(oids.VENDOR_ID)
_PID: Final = _oid(oids.PRODUCT_ID)
_COMMON_NAME: Final = _oid(x509.NameOID.COMMON_NAME)
_SERVER_AUTH: Final = _oid(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
_CLIENT_AUTH: Final = _oid(x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
_CRITICAL_OK: Final = frozenset(
    {tlv.EXT_BASIC_CONSTRAINTS, tlv.EXT_KEY_USAGE, tlv.EXT_EXTENDED_KEY_USAGE}
)
_MAX_COMMON_NAME: Final = 64  # kMax_CommonNameAttr_Length: the SDK scans only this much
_MAX_CATS: Final = tlv.MAX_RDN_ATTRIBUTES - 2  # kMaxSubjectCATAttributeCount
_DIGITAL_SIGNATURE: Final = 0x0001
_KEY_CERT_SIGN: Final = 0x0020
_CRL_SIGN: Final = 0x0040
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_RCAC_ID: Final = 20
_ICAC_ID: Final = 19
_FIRMWARE_SIGNING_ID: Final = 18


@dataclass(frozen=True, slots=True)
class VidPid:
    """Vendor and product id of an attestation certificate subject (None when absent)."""

    vendor_id: int | None
    product_id: int | None
    from_common_name: bool = False


@dataclass(frozen=True, slots=True)
class OperationalIds:
    """The Matter identifiers in an operational DN."""

    node_id: int | None = None
    fabric_id: int | None = None
    rcac_id: int | None = None
    icac_id: int | None = None
    cats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _DnIds:
    """Matter id values of one operational DN, by attribute, plus its attribute count."""

    values: dict[int, list[int]]
    count: int

    def get(self, enum: int) -> list[int]:
        return self.values.get(enum, [])

    @property
    def node(self) -> list[int]:
        return self.get(tlv.NODE_ID)

    @property
    def fabric(self) -> list[int]:
        return self.get(tlv.FABRIC_ID)

    @property
    def rcac(self) -> list[int]:
        return self.get(_RCAC_ID)

    @property
    def icac(self) -> list[int]:
        return self.get(_ICAC_ID)

    @property
    def firmware(self) -> list[int]:
        return self.get(_FIRMWARE_SIGNING_ID)

    @property
    def cats(self) -> list[int]:
        return self.get(tlv.CASE_AUTH_TAG)

    def ids(self) -> OperationalIds:
        return OperationalIds(
            node_id=self.node[0] if self.node else None,
            fabric_id=self.fabric[0] if self.fabric else None,
            rcac_id=self.rcac[0] if self.rcac else None,
            icac_id=self.icac[0] if self.icac else None,
            cats=tuple(self.cats),
        )


@dataclass(frozen=True, slots=True)
class Checked:
    """A certificate that passed ``check_der`` for ``kind``, with what pair checks need."""

    kind: MatterKind
    cert: certificate.Certificate
    public_key: ec.EllipticCurvePublicKey
    ski: bytes
    aki: bytes | None
    is_ca: bool
    path_len: int | None
    vid_pid: VidPid
    ids: OperationalIds


# ---------------------------------------------------------------- loading


def load_certificate(data: bytes) -> x509.Certificate:
    """Load a PEM or DER certificate, refusing non-v3 and non-DER input with a rule.

    cryptography itself refuses X.509 v1/v2, so this reports ``matter-version`` first.
    """
    encoded = _pem_to_der(data) if data.lstrip().startswith(b"-----BEGIN") else data
    if certificate.parse_certificate(encoded).version != 2:
        raise MatterError(Rule.VERSION, "Matter certificates must be X.509 v3")
    try:
        return x509.load_der_x509_certificate(encoded)
    except ValueError as exc:
        raise MatterError(Rule.DER, f"not a parseable X.509 certificate: {exc}") from exc


def _pem_to_der(data: bytes) -> bytes:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = data.find(begin)
    stop = data.find(end, start + len(begin))
    if start < 0 or stop < 0:
        raise MatterError(Rule.DER, "no PEM CERTIFICATE block")
    try:
        return base64.b64decode(b"".join(data[start + len(begin) : stop].split()), validate=True)
    except binascii.Error as exc:
        raise MatterError(Rule.DER, "PEM body is not base64") from exc


def _der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# ---------------------------------------------------------------- VID / PID


def _is_upper_hex(value: bytes) -> bool:
    return all(48 <= c <= 57 or 65 <= c <= 70 for c in value)


def _vid_pid_attribute(attr: certificate.Attribute, rule: Rule, what: str) -> int:
    if attr.string_tag != der.UTF8_STRING or len(attr.value) != 4 or not _is_upper_hex(attr.value):
        raise MatterError(
            rule, f"{what} must be a UTF8String of 4 uppercase hex digits, not {attr.value!r}"
        )
    return int(attr.value, 16)


def _find_fallback(text: bytes, prefix: bytes) -> int | None:
    # Find16BitUpperCaseHexAfterPrefix: the leftmost prefix followed by 4 uppercase hex
    # digits wins; a prefix seen without any valid value makes the whole DN invalid.
    start = text.find(prefix)
    seen = start >= 0
    while start >= 0:
        digits = text[start + len(prefix) : start + len(prefix) + 4]
        if len(digits) == 4 and _is_upper_hex(digits):
            return int(digits, 16)
        start = text.find(prefix, start + 1)
    if seen:
        raise MatterError(
            Rule.VIDPID_FALLBACK,
            f"Common Name has {prefix.decode()} without 4 uppercase hex digits after it",
        )
    return None


def _vid_pid(name: certificate.Name) -> VidPid:
    vid = pid = None
    by_oid = False
    for attr in name.attributes():
        if attr.oid == _VID:
            if vid is not None:
                raise MatterError(Rule.VID_FORMAT, "more than one Vendor ID attribute")
            vid = _vid_pid_attribute(attr, Rule.VID_FORMAT, "Vendor ID")
            by_oid = True
        elif attr.oid == _PID:
            if pid is not None:
                raise MatterError(Rule.PID_FORMAT, "more than one Product ID attribute")
            pid = _vid_pid_attribute(attr, Rule.PID_FORMAT, "Product ID")
            by_oid = True
    if by_oid:
        # 6.2.2.2: once a Matter OID is present the Common Name is not looked at.
        return VidPid(vid, pid)
    for attr in name.attributes():
        if attr.oid != _COMMON_NAME:
            continue
        text = attr.value[:_MAX_COMMON_NAME]
        vid = _find_fallback(text, b"Mvid:")
        pid = _find_fallback(text, b"Mpid:")
        if vid is not None or pid is not None:
            return VidPid(vid, pid, from_common_name=True)
    return VidPid(None, None)


def extract_vid_pid(cert: x509.Certificate) -> VidPid:
    """Return the subject's VID/PID: Matter OIDs, else ``Mvid:``/``Mpid:`` in the CN.

    Raises:
        MatterError: ``matter-vid-format``/``matter-pid-format`` for a malformed OID
            value, ``matter-vidpid-fallback`` for a malformed CN encoding.
    """
    return _vid_pid(certificate.parse_certificate(_der_of(cert)).subject)


# ---------------------------------------------------------------- operational DNs


def _dn_ids(name: certificate.Name, what: str) -> _DnIds:
    values: dict[int, list[int]] = {}
    count = 0
    for rdn in name.rdns:
        if len(rdn) != 1:
            raise MatterError(Rule.DN, f"{what}: multi-valued RDNs are not allowed")
        attr = rdn[0]
        count += 1
        enum = tlv.ATTRIBUTE_ENUMS.get(attr.oid)
        if enum is None:
            raise MatterError(Rule.DN, f"{what}: attribute {der.oid_text(attr.oid)} is not allowed")
        if enum in tlv.MATTER_64BIT_ATTRIBUTES or enum in tlv.MATTER_32BIT_ATTRIBUTES:
            values.setdefault(enum, []).append(tlv.matter_attribute_value(attr, enum))
        elif enum == tlv.DOMAIN_COMPONENT:
            if attr.string_tag != der.IA5_STRING:
                raise MatterError(Rule.DN, f"{what}: domainComponent must be an IA5String")
        elif attr.string_tag not in (der.UTF8_STRING, der.PRINTABLE_STRING):
            raise MatterError(
                Rule.DN,
                f"{what}: attribute {der.oid_text(attr.oid)} must be a UTF8String or "
                "PrintableString",
            )
    return _DnIds(values, count)


def extract_operational_ids(cert: x509.Certificate) -> OperationalIds:
    """Return the Matter identifiers (node, fabric, RCAC, ICAC ids, CATs) of the subject."""
    return _dn_ids(certificate.parse_certificate(_der_of(cert)).subject, "subject").ids()


def _check_fabric(ids: _DnIds, what: str) -> None:
    if len(ids.fabric) > 1:
        raise MatterError(Rule.FABRIC_ID, f"{what} has more than one fabric id")
    if ids.fabric and ids.fabric[0] == 0:
        raise MatterError(Rule.FABRIC_ID, f"{what} has fabric id 0, which is reserved")


def _check_operational_dn(cert: certificate.Certificate, kind: MatterKind) -> _DnIds:
    subject = _dn_ids(cert.subject, "subject")
    issuer = _dn_ids(cert.issuer, "issuer")
    _check_fabric(subject, "subject")
    _check_fabric(issuer, "issuer")
    others = subject.node + subject.firmware
    if kind is MatterKind.RCAC:
        if len(subject.rcac) != 1 or subject.icac or others or subject.cats:
            raise MatterError(
                Rule.RCAC_SUBJECT,
                "RCAC subject needs exactly one matter-rcac-id and no other Matter id or CAT",
            )
    elif kind is MatterKind.ICAC:
        if len(subject.icac) != 1 or subject.rcac or others or subject.cats:
            raise MatterError(
                Rule.ICAC_SUBJECT,
                "ICAC subject needs exactly one matter-icac-id and no other Matter id or CAT",
            )
        if len(issuer.rcac) != 1 or issuer.icac or issuer.node:
            raise MatterError(Rule.ICAC_ISSUER, "an ICAC must be issued by an RCAC")
    else:
        _check_noc_subject(subject)
        if len(issuer.rcac) + len(issuer.icac) != 1 or issuer.node:
            raise MatterError(Rule.NOC_ISSUER, "a NOC must be issued by an ICAC or an RCAC")
    if subject.fabric and issuer.fabric and subject.fabric != issuer.fabric:
        raise MatterError(
            Rule.CHAIN_FABRIC_MISMATCH,
            f"subject fabric id {subject.fabric[0]:016X} differs from the issuer's "
            f"{issuer.fabric[0]:016X}",
        )
    for ids, what in ((subject, "subject"), (issuer, "issuer")):
        if ids.count > tlv.MAX_RDN_ATTRIBUTES:
            raise MatterError(
                Rule.DN, f"{what} has {ids.count} attributes, Matter allows at most 5"
            )
    return subject


def _check_noc_subject(subject: _DnIds) -> None:
    if len(subject.node) != 1:
        raise MatterError(Rule.NOC_NODE_ID, "NOC subject needs exactly one matter-node-id")
    if not 1 <= subject.node[0] <= tlv.MAX_OPERATIONAL_NODE_ID:
        raise MatterError(
            Rule.NOC_NODE_ID,
            f"node id {subject.node[0]:016X} is outside the operational range "
            "0000000000000001-FFFFFFEFFFFFFFFF",
        )
    if subject.rcac or subject.icac or subject.firmware:
        raise MatterError(Rule.NOC_SUBJECT, "NOC subject must not carry an RCAC/ICAC/firmware id")
    if len(subject.fabric) != 1:
        raise MatterError(Rule.NOC_FABRIC_ID, "NOC subject needs exactly one matter-fabric-id")
    check_cats(subject.cats)


def check_cats(cats: Sequence[int]) -> None:
    """Check CASE Authenticated Tags: at most 3, version != 0, distinct identifiers."""
    if len(cats) > _MAX_CATS:
        raise MatterError(
            Rule.NOC_CAT_COUNT, f"{len(cats)} CATs, at most {_MAX_CATS} fit in a Matter DN"
        )
    seen: set[int] = set()
    for cat in cats:
        if not 0 <= cat <= 0xFFFF_FFFF:
            raise MatterError(Rule.DN_VALUE, f"CAT {cat} is not a 32-bit value")
        if cat & 0xFFFF == 0:
            raise MatterError(Rule.NOC_CAT_VERSION, f"CAT {cat:08X} has version 0")
        if cat >> 16 in seen:
            raise MatterError(
                Rule.NOC_CAT_DUPLICATE, f"CAT identifier {cat >> 16:04X} appears twice"
            )
        seen.add(cat >> 16)


# ---------------------------------------------------------------- one certificate


def _check_public_key(cert: certificate.Certificate) -> ec.EllipticCurvePublicKey:
    if cert.spki_alg != tlv.EC_PUBLIC_KEY:
        raise MatterError(
            Rule.CURVE,
            f"public key algorithm {der.oid_text(cert.spki_alg)} refused; "
            "Matter needs id-ecPublicKey",
        )
    if cert.spki_params != tlv.PRIME256V1:
        curve = (
            der.oid_text(cert.spki_params[2:])
            if cert.spki_params[:1] == bytes((der.OBJECT_ID,))
            else "explicit parameters"
        )
        raise MatterError(Rule.CURVE, f"curve {curve} refused; Matter needs prime256v1")
    point = cert.public_key
    if len(point) != 66 or point[:2] != b"\x00\x04":
        raise MatterError(Rule.CURVE, "public key must be a 65-byte uncompressed P-256 point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[1:])
    except ValueError as exc:
        raise MatterError(Rule.CURVE, "public key is not a point on P-256") from exc


def _check_serial(serial: bytes) -> None:
    if serial[0] & 0x80:
        raise MatterError(Rule.SERIAL, "serialNumber must be positive")
    if not any(serial):
        raise MatterError(Rule.SERIAL, "serialNumber must not be zero")
    if len(serial) > 20:
        raise MatterError(Rule.SERIAL, f"serialNumber is {len(serial)} octets, at most 20")


def _check_validity(cert: certificate.Certificate) -> None:
    for time, what in ((cert.not_before, "notBefore"), (cert.not_after, "notAfter")):
        expected = der.GENERALIZED_TIME if time.when.year >= 2050 else der.UTC_TIME
        if time.tag != expected:
            raise MatterError(
                Rule.VALIDITY,
                f"{what} must be a UTCTime before 2050 and a GeneralizedTime from 2050 "
                "(RFC 5280 4.1.2.5)",
            )
    if cert.not_before.when >= cert.not_after.when:
        raise MatterError(Rule.VALIDITY, "notBefore must be before notAfter")


_CA_RULES: Final = {
    MatterKind.PAA: (Rule.PAA_CA, Rule.PAA_PATHLEN, Rule.PAA_KEY_USAGE),
    MatterKind.PAI: (Rule.PAI_CA, Rule.PAI_PATHLEN, Rule.PAI_KEY_USAGE),
    MatterKind.RCAC: (Rule.RCAC_CA, Rule.RCAC_PATHLEN, Rule.RCAC_KEY_USAGE),
    MatterKind.ICAC: (Rule.ICAC_CA, Rule.ICAC_PATHLEN, Rule.ICAC_KEY_USAGE),
}
_LEAF_RULES: Final = {
    MatterKind.DAC: (Rule.DAC_CA, Rule.DAC_PATHLEN, Rule.DAC_KEY_USAGE),
    MatterKind.NOC: (Rule.NOC_CA, Rule.NOC_PATHLEN, Rule.NOC_KEY_USAGE),
}
# Allowed pathLenConstraint values per CA kind (None = absent).
_PATH_LENS: Final[dict[MatterKind, tuple[int | None, ...]]] = {
    MatterKind.PAA: (None, 1),  # "absent or 1" (VerifyAttestationCertificateFormat)
    MatterKind.PAI: (0,),  # "present and 0"
    MatterKind.RCAC: (None, 0, 1),  # ValidateChipRCAC rejects > 1
    MatterKind.ICAC: (None, 0),
}


def _check_usage(kind: MatterKind, is_ca: bool, path_len: int | None, key_usage: int) -> None:
    if kind in _CA_RULES:
        ca_rule, path_rule, usage_rule = _CA_RULES[kind]
        if not is_ca:
            raise MatterError(ca_rule, f"a {kind.upper()} must have cA TRUE")
        needed = _KEY_CERT_SIGN | _CRL_SIGN
        if key_usage & needed != needed or key_usage & ~(needed | _DIGITAL_SIGNATURE):
            raise MatterError(
                usage_rule,
                f"{kind.upper()} keyUsage must be keyCertSign and cRLSign "
                "(digitalSignature optional), nothing else",
            )
        if path_len not in _PATH_LENS[kind]:
            allowed = " or ".join("absent" if p is None else str(p) for p in _PATH_LENS[kind])
            shown = "absent" if path_len is None else path_len
            raise MatterError(
                path_rule, f"{kind.upper()} pathLenConstraint is {shown}, must be {allowed}"
            )
        return
    ca_rule, path_rule, usage_rule = _LEAF_RULES[kind]
    if is_ca:
        raise MatterError(ca_rule, f"a {kind.upper()} must not be a CA (cA TRUE)")
    if key_usage != _DIGITAL_SIGNATURE:
        raise MatterError(usage_rule, f"{kind.upper()} keyUsage must be exactly digitalSignature")
    if path_len is not None:
        raise MatterError(path_rule, f"a {kind.upper()} must not have a pathLenConstraint")


def _check_eku(kind: MatterKind, ext: certificate.Extension | None) -> None:
    if kind is MatterKind.NOC:
        purposes = tlv.parse_extended_key_usage(ext) if ext is not None else []
        if (
            ext is None
            or not ext.critical
            or len(purposes) != 2
            or set(purposes) != {_SERVER_AUTH, _CLIENT_AUTH}
        ):
            raise MatterError(
                Rule.NOC_EKU, "NOC extendedKeyUsage must be critical, serverAuth and clientAuth"
            )
    elif ext is not None:
        if kind is MatterKind.RCAC:
            raise MatterError(Rule.RCAC_EKU, "an RCAC must not have extendedKeyUsage")
        if kind is MatterKind.ICAC:
            raise MatterError(Rule.ICAC_EKU, "an ICAC must not have extendedKeyUsage")
        tlv.parse_extended_key_usage(ext)


def _extensions(cert: certificate.Certificate) -> dict[bytes, certificate.Extension]:
    found: dict[bytes, certificate.Extension] = {}
    for ext in cert.extensions:
        if ext.oid in found:
            raise MatterError(
                Rule.EXT_DUPLICATE, f"extension {der.oid_text(ext.oid)} appears twice"
            )
        if ext.explicit_false:
            raise MatterError(
                Rule.DER, f"extension {der.oid_text(ext.oid)}: critical FALSE must be omitted"
            )
        if ext.critical and ext.oid not in _CRITICAL_OK:
            raise MatterError(
                Rule.EXT_CRITICAL, f"extension {der.oid_text(ext.oid)} must not be critical"
            )
        found[ext.oid] = ext
    return found


def _verify(key: ec.EllipticCurvePublicKey, cert: certificate.Certificate) -> bool:
    try:
        key.verify(cert.signature[1:], cert.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


@from_der
def check_der(encoded: bytes, kind: MatterKind) -> Checked:
    """Check one DER certificate against the rules of ``kind`` (no issuer needed).

    Roots (PAA, RCAC) also get their self-signature verified; operational kinds get
    the TLV round trip. Prefer ``validate_certificate``; this is the building block
    for callers that already hold DER (bulk issuance).

    Raises:
        MatterError: the first rule broken.
    """
    cert = certificate.parse_certificate(encoded)
    if cert.version != 2:
        raise MatterError(Rule.VERSION, f"X.509 version {cert.version + 1}, Matter needs v3")
    _check_serial(cert.serial)
    if cert.tbs_sig_alg != tlv.ECDSA_WITH_SHA256:
        raise MatterError(Rule.SIG_ALG, "signature algorithm must be ecdsa-with-SHA256")
    if cert.sig_alg != cert.tbs_sig_alg:
        raise MatterError(Rule.SIG_ALG, "signatureAlgorithm differs from tbsCertificate's")
    tlv.signature_to_raw(cert.signature)
    public_key = _check_public_key(cert)
    _check_validity(cert)
    if cert.has_unique_ids:
        raise MatterError(Rule.UNIQUE_ID, "issuerUniqueID/subjectUniqueID must not be used")

    exts = _extensions(cert)
    bc = exts.get(tlv.EXT_BASIC_CONSTRAINTS)
    if bc is None or not bc.critical:
        raise MatterError(Rule.BASIC_CONSTRAINTS, "basicConstraints must be present and critical")
    is_ca, path_len = tlv.parse_basic_constraints(bc)
    ku = exts.get(tlv.EXT_KEY_USAGE)
    if ku is None or not ku.critical:
        raise MatterError(Rule.KEY_USAGE, "keyUsage must be present and critical")
    key_usage = der.read_named_bits(ku.value, "keyUsage")
    ski_ext = exts.get(tlv.EXT_SUBJECT_KEY_ID)
    ski = tlv.parse_key_id(ski_ext) if ski_ext is not None else b""
    if len(ski) != tlv.KEY_ID_LENGTH:
        raise MatterError(Rule.SKI, "subjectKeyIdentifier must be present with 20 bytes")
    aki_ext = exts.get(tlv.EXT_AUTHORITY_KEY_ID)
    aki = None
    if aki_ext is not None:
        aki, other = tlv.parse_authority_key_id(aki_ext)
        if other or aki is None or len(aki) != tlv.KEY_ID_LENGTH:
            raise MatterError(
                Rule.AKI, "authorityKeyIdentifier must hold only a 20-byte keyIdentifier"
            )
    elif kind is not MatterKind.PAA:
        raise MatterError(Rule.AKI, f"a {kind.upper()} must have authorityKeyIdentifier")
    _check_usage(kind, is_ca, path_len, key_usage)
    _check_eku(kind, exts.get(tlv.EXT_EXTENDED_KEY_USAGE))

    vid_pid = VidPid(None, None)
    ids = OperationalIds()
    if kind.is_operational:
        ids = _check_operational_dn(cert, kind).ids()
    else:
        vid_pid = _check_attestation_dn(cert, kind)
    if len(encoded) > tlv.MAX_DER_LENGTH:
        raise MatterError(Rule.DER_SIZE, f"certificate is {len(encoded)} bytes of DER, at most 600")
    if kind in (MatterKind.PAA, MatterKind.RCAC):
        _check_root(cert, kind, public_key, ski, aki)
    if kind.is_operational:
        tlv.check_round_trip(encoded)
    return Checked(kind, cert, public_key, ski, aki, is_ca, path_len, vid_pid, ids)


def _check_attestation_dn(cert: certificate.Certificate, kind: MatterKind) -> VidPid:
    vid_pid = _vid_pid(cert.subject)
    if kind is MatterKind.PAA and vid_pid.product_id is not None:
        raise MatterError(Rule.PAA_PID_PRESENT, "a PAA subject must not carry a Product ID")
    if kind is MatterKind.PAI and vid_pid.vendor_id is None:
        raise MatterError(Rule.PAI_VID_REQUIRED, "a PAI subject must carry a Vendor ID")
    if kind is MatterKind.DAC:
        if vid_pid.vendor_id is None:
            raise MatterError(Rule.DAC_VID_REQUIRED, "a DAC subject must carry a Vendor ID")
        if vid_pid.product_id is None:
            raise MatterError(Rule.DAC_PID_REQUIRED, "a DAC subject must carry a Product ID")
    return vid_pid


def _check_root(
    cert: certificate.Certificate,
    kind: MatterKind,
    public_key: ec.EllipticCurvePublicKey,
    ski: bytes,
    aki: bytes | None,
) -> None:
    aki_rule, signed_rule = (
        (Rule.PAA_AKI, Rule.PAA_SELF_SIGNED)
        if kind is MatterKind.PAA
        else (Rule.RCAC_AKI, Rule.RCAC_SELF_SIGNED)
    )
    if aki is not None and aki != ski:
        raise MatterError(aki_rule, f"{kind.upper()} authorityKeyIdentifier must equal its SKI")
    if cert.issuer.encoded != cert.subject.encoded:
        raise MatterError(signed_rule, f"{kind.upper()} issuer must equal its subject")
    if not _verify(public_key, cert):
        raise MatterError(signed_rule, f"{kind.upper()} self-signature does not verify")


# ---------------------------------------------------------------- pairs and chains


def check_pair(child: Checked, issuer: Checked, *, verify_signature: bool = True) -> None:
    """Check the issuer/child rules between two already checked certificates.

    Raises:
        MatterError: ``chain-*`` rules (issuer DN, AKI, signature, validity nesting,
            VID/PID scoping, fabric id, path length).
    """
    allowed = _CHAIN_SHAPES[child.kind]
    if not any(shape and shape[0] is issuer.kind for shape in allowed):
        raise MatterError(
            Rule.CHAIN_ISSUER_KIND,
            f"a {child.kind.upper()} cannot be issued by a {issuer.kind.upper()}",
        )
    if child.cert.issuer.encoded != issuer.cert.subject.encoded:
        raise MatterError(
            Rule.CHAIN_ISSUER_DN, "issuer DN is not byte-equal to the issuer's subject DN"
        )
    if child.aki != issuer.ski:
        raise MatterError(Rule.CHAIN_AKI, "authorityKeyIdentifier differs from the issuer's SKI")
    if verify_signature and not _verify(issuer.public_key, child.cert):
        raise MatterError(Rule.CHAIN_SIGNATURE, "signature does not verify with the issuer key")
    not_before = child.cert.not_before.when
    if not issuer.cert.not_before.when <= not_before <= issuer.cert.not_after.when:
        raise MatterError(
            Rule.CHAIN_VALIDITY,
            f"notBefore {not_before:%Y-%m-%dT%H:%M:%SZ} is outside the issuer's validity "
            "(IsCertificateValidAtIssuance)",
        )
    if child.is_ca and issuer.path_len == 0:
        raise MatterError(Rule.CHAIN_PATHLEN, "issuer pathLenConstraint 0 forbids a CA below it")
    if child.kind.is_operational:
        child_fabric, issuer_fabric = child.ids.fabric_id, issuer.ids.fabric_id
        if child_fabric is not None and issuer_fabric is not None and child_fabric != issuer_fabric:
            raise MatterError(
                Rule.CHAIN_FABRIC_MISMATCH,
                f"fabric id {child_fabric:016X} differs from the issuer's {issuer_fabric:016X}",
            )
        return
    _check_vid_pid_scope(child.vid_pid, issuer.vid_pid)


def _check_vid_pid_scope(child: VidPid, issuer: VidPid) -> None:
    if issuer.vendor_id is not None and child.vendor_id != issuer.vendor_id:
        raise MatterError(
            Rule.CHAIN_VID_MISMATCH,
            f"Vendor ID {child.vendor_id:04X} differs from the issuer's {issuer.vendor_id:04X}",
        )
    if issuer.product_id is not None and child.product_id != issuer.product_id:
        raise MatterError(
            Rule.CHAIN_PID_MISMATCH,
            f"Product ID {child.product_id or 0:04X} differs from the PID-scoped issuer's "
            f"{issuer.product_id:04X}",
        )


def _check_in_context(encoded: bytes, kind: MatterKind, context: str) -> Checked:
    try:
        return check_der(encoded, kind)
    except MatterError as exc:
        raise MatterError(exc.rule, f"{context} ({kind}): {exc.detail}") from exc


def infer_kind(cert: x509.Certificate) -> MatterKind:
    """Guess a certificate's kind from its subject and basicConstraints (not a validation)."""
    parsed = certificate.parse_certificate(_der_of(cert))
    subject = _dn_ids(parsed.subject, "subject") if _has_matter_ids(parsed.subject) else None
    if subject is not None:
        if subject.rcac:
            return MatterKind.RCAC
        if subject.icac:
            return MatterKind.ICAC
        return MatterKind.NOC
    if parsed.issuer.encoded == parsed.subject.encoded:
        return MatterKind.PAA
    bc = parsed.extension(tlv.EXT_BASIC_CONSTRAINTS)
    is_ca = bc is not None and tlv.parse_basic_constraints(bc)[0]
    return MatterKind.PAI if is_ca else MatterKind.DAC


def _has_matter_ids(name: certificate.Name) -> bool:
    operational = tlv.MATTER_64BIT_ATTRIBUTES | tlv.MATTER_32BIT_ATTRIBUTES
    return any(tlv.ATTRIBUTE_ENUMS.get(attr.oid) in operational for attr in name.attributes())


def validate_certificate(
    cert: x509.Certificate, kind: MatterKind, issuer: x509.Certificate | None = None
) -> None:
    """Validate one certificate against its Matter profile, and against its issuer if given.

    With ``issuer``, the issuer is checked against its own profile too (its kind follows
    from ``kind``: PAI for a DAC, ICAC or RCAC for a NOC, ...) and the pair rules apply.
    Use ``validate_chain`` to check a complete chain up to the root.

    Raises:
        MatterError: the first rule broken, e.g. ``dac-vid-required: ...``.
    """
    encoded = _der_of(cert)
    checked = check_der(encoded, kind)
    if issuer is None:
        return
    issuer_der = _der_of(issuer)
    if kind in (MatterKind.PAA, MatterKind.RCAC):
        if issuer_der != encoded:
            raise MatterError(Rule.CHAIN_DEPTH, f"a {kind.upper()} is self-signed: no issuer")
        return
    issuer_kind = _CHAIN_SHAPES[kind][0][0]
    if kind is MatterKind.NOC and infer_kind(issuer) is MatterKind.RCAC:
        issuer_kind = MatterKind.RCAC
    check_pair(checked, _check_in_context(issuer_der, issuer_kind, "issuer"))


def validate_chain(
    cert: x509.Certificate, kind: MatterKind, chain: Sequence[x509.Certificate]
) -> None:
    """Validate a certificate and its complete chain, nearest issuer first, root last.

    Shapes: PAA; PAI, PAA; DAC, PAI, PAA; RCAC; ICAC, RCAC; NOC, [ICAC,] RCAC.

    Raises:
        MatterError: ``chain-depth``/``chain-incomplete`` for a wrong length, else the
            first profile or pair rule broken (the detail names the certificate).
    """
    shapes = _CHAIN_SHAPES[kind]
    longest = max(len(shape) for shape in shapes)
    if len(chain) > longest:
        raise MatterError(
            Rule.CHAIN_DEPTH,
            f"{len(chain)} issuers above a {kind.upper()}, at most {longest} in Matter",
        )
    shape = next((s for s in shapes if len(s) == len(chain)), None)
    if shape is None:
        raise MatterError(
            Rule.CHAIN_INCOMPLETE,
            f"a {kind.upper()} chain needs {' -> '.join(k.upper() for k in shapes[0])}",
        )
    checked = [check_der(_der_of(cert), kind)]
    checked += [
        _check_in_context(_der_of(c), k, f"chain[{i}]")
        for i, (c, k) in enumerate(zip(chain, shape, strict=True))
    ]
    for child, issuer in itertools.pairwise(checked):
        check_pair(child, issuer)
    fabrics = {c.ids.fabric_id for c in checked if c.ids.fabric_id is not None}
    if len(fabrics) > 1:
        raise MatterError(
            Rule.CHAIN_FABRIC_MISMATCH,
            "fabric ids differ along the chain: " + ", ".join(f"{f:016X}" for f in sorted(fabrics)),
        )
