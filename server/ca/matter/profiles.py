"""Pure builders for Matter certificates (PAA, PAI, DAC, RCAC, ICAC, NOC).

Each builder checks its inputs, builds with cryptography (ecdsa-with-SHA256, 20-byte
SHA-1 SKI, keyIdentifier-only AKI, VID/PID and Matter ids as UTF8String uppercase hex),
then validates its own output with ``rules`` before returning it; operational
certificates additionally pass the Matter TLV round trip. ``DacFactory`` precomputes
the per-PAI parts for bulk factory issuance.

No I/O, no clock, no randomness: serials and times come from the caller. Imports only
cryptography, the standard library and this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca import keys
from server.ca.matter import certificate, oids, rules, tlv
from server.ca.matter.errors import MatterError, Rule
from server.ca.matter.rules import MatterKind
from server.ca.signer import Signer

# A CA key as the builders take it: an engine ``Signer``, or an in-process key (tests).
IssuerKey = Signer | CertificateIssuerPrivateKeyTypes

__all__ = [
    "NO_EXPIRY",
    "DacFactory",
    "build_dac",
    "build_icac",
    "build_noc",
    "build_paa",
    "build_pai",
    "build_rcac",
]

NO_EXPIRY: Final = certificate.NO_EXPIRY
"""notAfter 99991231235959Z, "no well-defined expiration date"; pass ``not_after=None``."""

_MAX_SERIAL: Final = 1 << 159  # 20 octets of positive INTEGER
_MAX_VENDOR_ID: Final = 0xFFF4  # VendorId::kTestVendor4, the highest valid VID
_MAX_COMMON_NAME: Final = 64  # ub-common-name
_MAX_U64: Final = (1 << 64) - 1
_CHIP_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_CHIP_TIME: Final = 0xFFFF_FFFF
_LEAF_CONSTRAINTS: Final = x509.BasicConstraints(ca=False, path_length=None)
_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_NOC_EKU: Final = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
)


# ---------------------------------------------------------------- input checks


def _p256_public(key: CertificatePublicKeyTypes, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        name = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise MatterError(Rule.CURVE, f"{what} must be a P-256 (secp256r1) key, not {name}")
    return key


def _p256_private(key: IssuerKey, what: str) -> tuple[Signer, ec.EllipticCurvePublicKey]:
    signer = keys.as_signer(key)
    public = signer.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        name = (
            public.curve.name if isinstance(public, ec.EllipticCurvePublicKey) else "another type"
        )
        raise MatterError(Rule.CURVE, f"{what} must be a P-256 (secp256r1) key, not {name}")
    return signer, public


def _check_serial(serial: int) -> int:
    if not 1 <= serial < _MAX_SERIAL:
        raise MatterError(Rule.SERIAL, "serial must be a positive integer of at most 159 bits")
    return serial


def _check_name(name: str) -> str:
    if not name or len(name.encode()) > _MAX_COMMON_NAME:
        raise MatterError(Rule.NAME, f"common name must be 1-{_MAX_COMMON_NAME} bytes of UTF-8")
    if "Mvid:" in name or "Mpid:" in name:
        # Divergence from the CN fallback (6.2.2.2), on purpose: privca always encodes
        # VID/PID as Matter OIDs, and a stray Mvid:/Mpid: in the CN only invites
        # verifiers that still parse the CN to disagree with the OIDs.
        raise MatterError(
            Rule.VIDPID_FALLBACK, "common name must not contain Mvid:/Mpid: (VID/PID are OIDs)"
        )
    return name


def _check_vid(vid: int) -> int:
    if not 1 <= vid <= _MAX_VENDOR_ID:
        raise MatterError(Rule.VID_RANGE, f"Vendor ID 0x{vid:X} is outside 0x0001-0xFFF4")
    return vid


def _check_pid(pid: int) -> int:
    if not 1 <= pid <= 0xFFFF:
        raise MatterError(Rule.PID_RANGE, f"Product ID 0x{pid:X} is outside 0x0001-0xFFFF")
    return pid


def _check_u64(value: int, rule: Rule, what: str) -> int:
    if not 0 <= value <= _MAX_U64:
        raise MatterError(rule, f"{what} must be a 64-bit unsigned integer")
    return value


def _check_fabric_id(fabric_id: int) -> int:
    if not 1 <= fabric_id <= _MAX_U64:
        raise MatterError(Rule.FABRIC_ID, "fabric id must be a non-zero 64-bit integer")
    return fabric_id


def _utc(when: datetime, what: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise MatterError(Rule.VALIDITY, f"{what} must be timezone-aware")
    return when.astimezone(UTC).replace(microsecond=0)


def _validity(
    not_before: datetime, not_after: datetime | None, *, operational: bool
) -> tuple[datetime, datetime]:
    start = _utc(not_before, "not_before")
    end = NO_EXPIRY if not_after is None else _utc(not_after, "not_after")
    if start.year < 1950:
        raise MatterError(Rule.VALIDITY, "not_before must be in 1950 or later")
    if start >= end:
        raise MatterError(Rule.VALIDITY, "not_before must be before not_after")
    if operational:
        # Matter TLV stores epoch seconds since 2000 in 32 bits, and 0 means "no expiry".
        if start <= _CHIP_EPOCH:
            raise MatterError(Rule.VALIDITY, "not_before must be after 2000-01-01T00:00:00Z")
        if end != NO_EXPIRY and (end - _CHIP_EPOCH).total_seconds() > _MAX_CHIP_TIME:
            raise MatterError(Rule.VALIDITY, "not_after is beyond the Matter epoch range (2136)")
    return start, end


def _check_nested(start: datetime, issuer: rules.Checked) -> None:
    # IsCertificateValidAtIssuance: a child's notBefore must lie in the issuer's validity.
    if not issuer.cert.not_before.when <= start <= issuer.cert.not_after.when:
        raise MatterError(
            Rule.CHAIN_VALIDITY,
            f"not_before {start:%Y-%m-%dT%H:%M:%SZ} is outside the issuer's validity",
        )


def _hex(value: int, digits: int) -> str:
    return f"{value:0{digits}X}"


# ---------------------------------------------------------------- issuers


@dataclass(frozen=True, slots=True)
class _Issuer:
    checked: rules.Checked
    name: x509.Name
    key: Signer
    aki: x509.AuthorityKeyIdentifier


def _load_issuer(
    cert: x509.Certificate,
    key: IssuerKey,
    *,
    child: MatterKind,
    allowed: tuple[MatterKind, ...],
) -> _Issuer:
    kind = rules.infer_kind(cert)
    if kind not in allowed:
        same_level = kind is child and kind in (MatterKind.PAI, MatterKind.ICAC)
        rule = Rule.CHAIN_DEPTH if same_level else Rule.CHAIN_ISSUER_KIND
        expected = " or ".join(k.upper() for k in allowed)
        raise MatterError(
            rule,
            f"a {child.upper()} must be issued by a {expected}, and the issuer looks like a "
            f"{kind.upper()} (Matter chains are PAA -> PAI -> DAC and RCAC -> [ICAC] -> NOC)",
        )
    encoded = cert.public_bytes(Encoding.DER)
    try:
        checked = rules.check_der(encoded, kind)
    except MatterError as exc:
        raise MatterError(exc.rule, f"issuer ({kind}): {exc.detail}") from exc
    signer, public = _p256_private(key, "issuer key")
    raw = PublicFormat.UncompressedPoint
    if public.public_bytes(Encoding.X962, raw) != checked.cert.public_key[1:]:
        raise MatterError(Rule.CHAIN_ISSUER_KEY, "issuer key does not match the issuer certificate")
    if child in (MatterKind.PAI, MatterKind.ICAC) and checked.path_len == 0:
        raise MatterError(
            Rule.CHAIN_PATHLEN, f"the {kind.upper()} has pathLenConstraint 0: no CA below it"
        )
    aki = x509.AuthorityKeyIdentifier(checked.ski, None, None)
    return _Issuer(checked, cert.subject, signer, aki)


def _sign(
    builder: x509.CertificateBuilder,
    key: Signer,
    *,
    public_key: ec.EllipticCurvePublicKey,
    ku: x509.KeyUsage,
    bc: x509.BasicConstraints,
    aki: x509.AuthorityKeyIdentifier | None,
    eku: x509.ExtendedKeyUsage | None = None,
) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = builder.add_extension(bc, critical=True).add_extension(ku, critical=True)
    if eku is not None:
        builder = builder.add_extension(eku, critical=True)
    builder = builder.add_extension(ski, critical=False).add_extension(
        aki or x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False
    )
    return key.sign_certificate(builder)


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    serial: int,
    validity: tuple[datetime, datetime],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
    )


def _finish(cert: x509.Certificate, kind: MatterKind, issuer: _Issuer | None) -> x509.Certificate:
    checked = rules.check_der(cert.public_bytes(Encoding.DER), kind)
    if issuer is not None:
        rules.check_pair(checked, issuer.checked)
    return cert


# ---------------------------------------------------------------- attestation


def _self_signed_ca(
    key: tuple[Signer, ec.EllipticCurvePublicKey],
    subject: x509.Name,
    validity: tuple[datetime, datetime],
    serial: int,
    path_len: int | None,
    kind: MatterKind,
) -> x509.Certificate:
    """Sign a self-signed Matter root (PAA or RCAC) and check it against its profile."""
    signer, public_key = key
    builder = _base(subject, subject, public_key, _check_serial(serial), validity)
    bc = x509.BasicConstraints(ca=True, path_length=path_len)
    cert = _sign(builder, signer, public_key=public_key, ku=_CA_KEY_USAGE, bc=bc, aki=None)
    return _finish(cert, kind, None)


def build_paa(
    key: IssuerKey,
    *,
    name: str,
    vid: int | None,
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
    path_len: int | None = 1,
) -> x509.Certificate:
    """Build a self-signed PAA; ``vid`` makes it VID-scoped, None non-VID-scoped.

    Args:
        key: the PAA's P-256 private key (signs the certificate).
        name: Common Name.
        vid: Vendor ID for a VID-scoped PAA, or None.
        not_before: start of validity (aware datetime).
        not_after: end of validity, or None for 99991231235959Z.
        serial: positive serial of at most 159 bits (the caller supplies entropy).
        path_len: pathLenConstraint, 1 (default, as upstream test PAAs) or None.

    Raises:
        MatterError: naming the rule an input or the result breaks.
    """
    signer = _p256_private(key, "PAA key")
    if path_len not in (None, 1):
        raise MatterError(Rule.PAA_PATHLEN, "PAA pathLenConstraint must be absent or 1")
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, _check_name(name))]
    if vid is not None:
        attrs.append(x509.NameAttribute(oids.VENDOR_ID, _hex(_check_vid(vid), 4)))
    validity = _validity(not_before, not_after, operational=False)
    return _self_signed_ca(signer, x509.Name(attrs), validity, serial, path_len, MatterKind.PAA)


def build_pai(
    public_key: CertificatePublicKeyTypes,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    name: str,
    vid: int | None,
    pid: int | None,
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
) -> x509.Certificate:
    """Build a PAI under a PAA; ``pid`` makes it PID-scoped.

    Args:
        public_key: the PAI's P-256 public key.
        issuer_cert: the PAA certificate (validated as a PAA).
        issuer_key: the PAA's private key.
        name: Common Name.
        vid: Vendor ID (required; must equal a VID-scoped PAA's VID).
        pid: Product ID for a PID-scoped PAI, or None.
        not_before: start of validity, inside the PAA's validity.
        not_after: end of validity, or None for 99991231235959Z.
        serial: positive serial of at most 159 bits.

    Raises:
        MatterError: naming the rule an input or the result breaks.
    """
    subject_key = _p256_public(public_key, "PAI public key")
    issuer = _load_issuer(issuer_cert, issuer_key, child=MatterKind.PAI, allowed=(MatterKind.PAA,))
    if vid is None:
        raise MatterError(Rule.PAI_VID_REQUIRED, "a PAI must carry a Vendor ID")
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, _check_name(name)),
        x509.NameAttribute(oids.VENDOR_ID, _hex(_check_vid(vid), 4)),
    ]
    if pid is not None:
        attrs.append(x509.NameAttribute(oids.PRODUCT_ID, _hex(_check_pid(pid), 4)))
    paa_vid = issuer.checked.vid_pid.vendor_id
    if paa_vid is not None and vid != paa_vid:
        raise MatterError(
            Rule.CHAIN_VID_MISMATCH,
            f"VID {vid:04X} differs from the VID-scoped PAA's {paa_vid:04X}",
        )
    validity = _validity(not_before, not_after, operational=False)
    _check_nested(validity[0], issuer.checked)
    builder = _base(x509.Name(attrs), issuer.name, subject_key, _check_serial(serial), validity)
    bc = x509.BasicConstraints(ca=True, path_length=0)
    cert = _sign(
        builder, issuer.key, public_key=subject_key, ku=_CA_KEY_USAGE, bc=bc, aki=issuer.aki
    )
    return _finish(cert, MatterKind.PAI, issuer)


class DacFactory:
    """Issues DACs under one PAI, computing the per-PAI parts once.

    The PAI is validated (and its key matched) when the factory is made; each DAC is
    then built, signed and validated with no further issuer work (no signature
    re-verification: the factory signed it with the checked PAI key).
    """

    __slots__ = ("_issuer", "_pai_pid", "_pai_vid")

    def __init__(self, pai_cert: x509.Certificate, pai_key: IssuerKey) -> None:
        """Validate the PAI and its key.

        Raises:
            MatterError: the PAI breaks a rule, is not a PAI, or the key does not match.
        """
        self._issuer = _load_issuer(
            pai_cert, pai_key, child=MatterKind.DAC, allowed=(MatterKind.PAI,)
        )
        vid_pid = self._issuer.checked.vid_pid
        if vid_pid.vendor_id is None:  # pragma: no cover - check_der guarantees a PAI VID
            raise MatterError(Rule.PAI_VID_REQUIRED, "the PAI carries no Vendor ID")
        self._pai_vid: int = vid_pid.vendor_id
        self._pai_pid = vid_pid.product_id

    @property
    def vendor_id(self) -> int:
        """Return the PAI's Vendor ID (every DAC must carry it)."""
        return self._pai_vid

    @property
    def product_id(self) -> int | None:
        """Return the PAI's Product ID if it is PID-scoped."""
        return self._pai_pid

    def build(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        name: str,
        vid: int | None,
        pid: int | None,
        not_before: datetime,
        not_after: datetime | None,
        serial: int,
    ) -> x509.Certificate:
        """Build, sign and validate one DAC (see ``build_dac`` for the arguments)."""
        subject_key = _p256_public(public_key, "DAC public key")
        if vid is None:
            raise MatterError(Rule.DAC_VID_REQUIRED, "a DAC must carry a Vendor ID")
        if pid is None:
            raise MatterError(Rule.DAC_PID_REQUIRED, "a DAC must carry a Product ID")
        if vid != self._pai_vid:
            raise MatterError(
                Rule.CHAIN_VID_MISMATCH, f"VID {vid:04X} differs from the PAI's {self._pai_vid:04X}"
            )
        if self._pai_pid is not None and pid != self._pai_pid:
            raise MatterError(
                Rule.CHAIN_PID_MISMATCH,
                f"PID {pid:04X} differs from the PID-scoped PAI's {self._pai_pid:04X}",
            )
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, _check_name(name)),
                x509.NameAttribute(oids.VENDOR_ID, _hex(vid, 4)),
                x509.NameAttribute(oids.PRODUCT_ID, _hex(_check_pid(pid), 4)),
            ]
        )
        validity = _validity(not_before, not_after, operational=False)
        issuer = self._issuer
        _check_nested(validity[0], issuer.checked)
        builder = _base(subject, issuer.name, subject_key, _check_serial(serial), validity)
        cert = _sign(
            builder,
            issuer.key,
            public_key=subject_key,
            ku=_LEAF_KEY_USAGE,
            bc=_LEAF_CONSTRAINTS,
            aki=issuer.aki,
        )
        checked = rules.check_der(cert.public_bytes(Encoding.DER), MatterKind.DAC)
        rules.check_pair(checked, issuer.checked, verify_signature=False)
        return cert


def build_dac(
    public_key: CertificatePublicKeyTypes,
    *,
    pai_cert: x509.Certificate,
    pai_key: IssuerKey,
    name: str,
    vid: int | None,
    pid: int | None,
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
) -> x509.Certificate:
    """Build one DAC under a PAI; for many DACs reuse a ``DacFactory``.

    Args:
        public_key: the device's P-256 public key.
        pai_cert: the PAI certificate (validated as a PAI).
        pai_key: the PAI's private key.
        name: Common Name.
        vid: Vendor ID (required, must equal the PAI's).
        pid: Product ID (required, must equal a PID-scoped PAI's).
        not_before: start of validity, inside the PAI's validity.
        not_after: end of validity, or None for 99991231235959Z ("no expiry").
        serial: positive serial of at most 159 bits.

    Raises:
        MatterError: naming the rule an input or the result breaks.
    """
    return DacFactory(pai_cert, pai_key).build(
        public_key,
        name=name,
        vid=vid,
        pid=pid,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )


# ---------------------------------------------------------------- operational


def build_rcac(
    key: IssuerKey,
    *,
    rcac_id: int,
    fabric_id: int | None = None,
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
    path_len: int | None = None,
) -> x509.Certificate:
    """Build a self-signed RCAC (subject: matter-rcac-id, optional matter-fabric-id).

    Args:
        key: the RCAC's P-256 private key.
        rcac_id: 64-bit RCAC id.
        fabric_id: non-zero fabric id, or None.
        not_before: start of validity, after 2000-01-01.
        not_after: end of validity, or None for 99991231235959Z.
        serial: positive serial of at most 159 bits.
        path_len: pathLenConstraint: None (as the SDK's own RCACs), 0 or 1.

    Raises:
        MatterError: naming the rule an input or the result breaks (including the TLV
            round trip).
    """
    signer = _p256_private(key, "RCAC key")
    if path_len not in (None, 0, 1):
        raise MatterError(Rule.RCAC_PATHLEN, "RCAC pathLenConstraint must be absent, 0 or 1")
    attrs = [
        x509.NameAttribute(
            oids.RCAC_ID, _hex(_check_u64(rcac_id, Rule.RCAC_SUBJECT, "rcac_id"), 16)
        )
    ]
    if fabric_id is not None:
        attrs.append(x509.NameAttribute(oids.FABRIC_ID, _hex(_check_fabric_id(fabric_id), 16)))
    validity = _validity(not_before, not_after, operational=True)
    return _self_signed_ca(signer, x509.Name(attrs), validity, serial, path_len, MatterKind.RCAC)


def build_icac(
    public_key: CertificatePublicKeyTypes,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    icac_id: int,
    fabric_id: int | None = None,
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
    path_len: int | None = 0,
) -> x509.Certificate:
    """Build an ICAC under an RCAC (subject: matter-icac-id, optional matter-fabric-id).

    Args:
        public_key: the ICAC's P-256 public key.
        issuer_cert: the RCAC certificate (an ICAC cannot issue an ICAC).
        issuer_key: the RCAC's private key.
        icac_id: 64-bit ICAC id.
        fabric_id: fabric id (must equal the RCAC's if it has one), or None.
        not_before: start of validity, inside the RCAC's validity.
        not_after: end of validity, or None for 99991231235959Z.
        serial: positive serial of at most 159 bits.
        path_len: pathLenConstraint, 0 (default) or None.

    Raises:
        MatterError: naming the rule an input or the result breaks.
    """
    subject_key = _p256_public(public_key, "ICAC public key")
    issuer = _load_issuer(
        issuer_cert, issuer_key, child=MatterKind.ICAC, allowed=(MatterKind.RCAC,)
    )
    if path_len not in (None, 0):
        raise MatterError(Rule.ICAC_PATHLEN, "ICAC pathLenConstraint must be absent or 0")
    attrs = [
        x509.NameAttribute(
            oids.ICAC_ID, _hex(_check_u64(icac_id, Rule.ICAC_SUBJECT, "icac_id"), 16)
        )
    ]
    if fabric_id is not None:
        _check_same_fabric(fabric_id, issuer)
        attrs.append(x509.NameAttribute(oids.FABRIC_ID, _hex(_check_fabric_id(fabric_id), 16)))
    validity = _validity(not_before, not_after, operational=True)
    _check_nested(validity[0], issuer.checked)
    builder = _base(x509.Name(attrs), issuer.name, subject_key, _check_serial(serial), validity)
    bc = x509.BasicConstraints(ca=True, path_length=path_len)
    cert = _sign(
        builder, issuer.key, public_key=subject_key, ku=_CA_KEY_USAGE, bc=bc, aki=issuer.aki
    )
    return _finish(cert, MatterKind.ICAC, issuer)


def _check_same_fabric(fabric_id: int, issuer: _Issuer) -> None:
    issuer_fabric = issuer.checked.ids.fabric_id
    if issuer_fabric is not None and fabric_id != issuer_fabric:
        raise MatterError(
            Rule.CHAIN_FABRIC_MISMATCH,
            f"fabric id {fabric_id:016X} differs from the issuer's {issuer_fabric:016X}",
        )


def build_noc(
    public_key: CertificatePublicKeyTypes,
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    node_id: int,
    fabric_id: int,
    cats: Sequence[int] = (),
    not_before: datetime,
    not_after: datetime | None,
    serial: int,
) -> x509.Certificate:
    """Build a NOC under an ICAC or RCAC.

    Size budget: with 3 CATs, no-expiry notAfter and an ICAC issuer that carries a fabric
    id, the 600-byte DER limit leaves room for a serial of at most 63 bits (8 octets);
    larger serials fail with ``matter-der-size`` (sometimes, as ECDSA signatures vary by
    two bytes).

    Args:
        public_key: the node's P-256 public key.
        issuer_cert: the ICAC or RCAC certificate.
        issuer_key: the issuer's private key.
        node_id: operational node id, 0x0000000000000001-0xFFFFFFEFFFFFFFFF.
        fabric_id: non-zero fabric id (must equal the issuer's if it has one).
        cats: up to 3 CASE Authenticated Tags (version != 0, distinct identifiers).
        not_before: start of validity, inside the issuer's validity.
        not_after: end of validity, or None for 99991231235959Z.
        serial: positive serial of at most 159 bits.

    Raises:
        MatterError: naming the rule an input or the result breaks.
    """
    subject_key = _p256_public(public_key, "NOC public key")
    if not 1 <= node_id <= tlv.MAX_OPERATIONAL_NODE_ID:
        raise MatterError(
            Rule.NOC_NODE_ID,
            f"node id 0x{node_id:X} is outside the operational range "
            "0x0000000000000001-0xFFFFFFEFFFFFFFFF",
        )
    rules.check_cats(cats)
    issuer = _load_issuer(
        issuer_cert,
        issuer_key,
        child=MatterKind.NOC,
        allowed=(MatterKind.ICAC, MatterKind.RCAC),
    )
    _check_same_fabric(_check_fabric_id(fabric_id), issuer)
    attrs = [
        x509.NameAttribute(oids.NODE_ID, _hex(node_id, 16)),
        x509.NameAttribute(oids.FABRIC_ID, _hex(fabric_id, 16)),
        *(x509.NameAttribute(oids.CASE_AUTH_TAG, _hex(cat, 8)) for cat in cats),
    ]
    validity = _validity(not_before, not_after, operational=True)
    _check_nested(validity[0], issuer.checked)
    builder = _base(x509.Name(attrs), issuer.name, subject_key, _check_serial(serial), validity)
    cert = _sign(
        builder,
        issuer.key,
        public_key=subject_key,
        ku=_LEAF_KEY_USAGE,
        bc=_LEAF_CONSTRAINTS,
        aki=issuer.aki,
        eku=_NOC_EKU,
    )
    return _finish(cert, MatterKind.NOC, issuer)
