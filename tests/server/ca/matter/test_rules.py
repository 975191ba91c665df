"""The Matter validator against the vectors in tests/data/matter and hand-made refusals."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest
from _pytest.mark import ParameterSet
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from server.ca.matter import oids, profiles, rules
from server.ca.matter.errors import MatterError, Rule
from server.ca.matter.rules import MatterKind
from tests.support import MATTER_VECTORS

NB: Final = datetime(2024, 6, 1, tzinfo=UTC)
FABRIC: Final = 0xFAB0_0000_0000_001D

# The rule each must-fail vector is refused for (manifest.tsv says only "fail").
EXPECTED_RULES: Final[dict[str, Rule]] = {
    "struct/dac_cert_version_v2/dac-Cert.pem": Rule.VERSION,
    "struct/dac_sig_algo_ecdsa_with_sha1/dac-Cert.pem": Rule.SIG_ALG,
    "struct/dac_sig_curve_secp256k1/dac-Cert.pem": Rule.CURVE,
    "struct/dac_ext_basic_missing/dac-Cert.pem": Rule.BASIC_CONSTRAINTS,
    "struct/dac_ext_basic_critical_wrong/dac-Cert.pem": Rule.BASIC_CONSTRAINTS,
    "struct/dac_ext_basic_ca_wrong/dac-Cert.pem": Rule.DAC_CA,
    "struct/dac_ext_basic_pathlen_presence_wrong/dac-Cert.pem": Rule.DAC_PATHLEN,
    "struct/dac_ext_key_usage_missing/dac-Cert.pem": Rule.KEY_USAGE,
    "struct/dac_ext_key_usage_dig_sig_wrong/dac-Cert.pem": Rule.DAC_KEY_USAGE,
    "struct/dac_ext_key_usage_key_cert_sign_wrong/dac-Cert.pem": Rule.DAC_KEY_USAGE,
    "struct/dac_ext_akid_missing/dac-Cert.pem": Rule.AKI,
    "struct/dac_ext_skid_missing/dac-Cert.pem": Rule.SKI,
    "struct/pai_ext_basic_ca_wrong/pai-Cert.pem": Rule.PAI_CA,
    "struct/pai_ext_basic_pathlen1/pai-Cert.pem": Rule.PAI_PATHLEN,
    "struct/pai_ext_basic_pathlen_presence_wrong/pai-Cert.pem": Rule.PAI_PATHLEN,
    "struct/pai_ext_key_usage_key_cert_sign_wrong/pai-Cert.pem": Rule.PAI_KEY_USAGE,
    "synthetic/att-dac-fail-fallback-06.pem": Rule.VIDPID_FALLBACK,
    "synthetic/att-dac-fail-fallback-07.pem": Rule.VIDPID_FALLBACK,
    "synthetic/att-dac-fail-fallback-13.pem": Rule.DAC_VID_REQUIRED,
    "synthetic/att-dac-fail-mixed-17.pem": Rule.DAC_VID_REQUIRED,
    "synthetic/att-dac-fail-vid-lowercase.pem": Rule.VID_FORMAT,
    "synthetic/att-dac-fail-vid-mismatch.pem": Rule.CHAIN_VID_MISMATCH,
    "synthetic/att-paa-fail-pid-present.pem": Rule.PAA_PID_PRESENT,
    "synthetic/att-pai-fail-vid-missing.pem": Rule.PAI_VID_REQUIRED,
    "synthetic/att-pai-fail-vid-differs-from-paa.pem": Rule.CHAIN_VID_MISMATCH,
    "synthetic/op-noc-fail-no-eku.pem": Rule.NOC_EKU,
    "synthetic/op-noc-fail-eku-noncritical.pem": Rule.NOC_EKU,
    "synthetic/op-noc-fail-ca-true.pem": Rule.NOC_CA,
    "synthetic/op-noc-fail-nodeid-range.pem": Rule.NOC_NODE_ID,
    "synthetic/op-noc-fail-nodeid-lowercase.pem": Rule.DN_VALUE,
    "synthetic/op-noc-fail-fabric-missing.pem": Rule.NOC_FABRIC_ID,
    "synthetic/op-noc-fail-fabric-mismatch.pem": Rule.CHAIN_FABRIC_MISMATCH,
    "synthetic/op-noc-fail-cat-version0.pem": Rule.NOC_CAT_VERSION,
    "synthetic/op-noc-fail-too-many-attrs.pem": Rule.NOC_CAT_COUNT,
    "synthetic/op-noc-fail-ku-keycertsign.pem": Rule.NOC_KEY_USAGE,
    "synthetic/op-noc-fail-sha384.pem": Rule.SIG_ALG,
    "synthetic/op-noc-fail-critical-unknown-ext.pem": Rule.EXT_CRITICAL,
    "synthetic/op-icac-fail-pathlen1.pem": Rule.ICAC_PATHLEN,
    "synthetic/op-rcac-fail-eku.pem": Rule.RCAC_EKU,
}


@dataclass(frozen=True, slots=True)
class Row:
    """One manifest.tsv line."""

    path: str
    kind: MatterKind
    chain: tuple[str, ...]
    expect: str
    reason: str


def _row_id(path: str, expect: str) -> str:
    parts = path.removesuffix(".pem").split("/")
    if parts[0] == "struct":
        case, name = parts[1], parts[2].removesuffix("-Cert")
        label = case if case.startswith(name) else f"{case}-{name}"
    else:
        label = parts[-1].lower().removeprefix("chip-test-").removesuffix("-cert")
    return f"{expect}/{label}"


def _manifest() -> list[ParameterSet]:
    manifest = MATTER_VECTORS / "manifest.tsv"
    params = []
    for line in manifest.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, kind, chain, expect, reason = line.split("\t")
        row = Row(
            path, MatterKind(kind), tuple(chain.split()) if chain != "-" else (), expect, reason
        )
        params.append(pytest.param(row, id=_row_id(path, expect)))
    return params


def _validate_row(vectors: Path, row: Row) -> None:
    cert = rules.load_certificate((vectors / row.path).read_bytes())
    if row.chain:
        chain = [rules.load_certificate((vectors / p).read_bytes()) for p in row.chain]
        rules.validate_chain(cert, row.kind, chain)
    else:
        rules.validate_certificate(cert, row.kind)


@pytest.mark.parametrize("row", _manifest())
def test_validator_agrees_with_manifest(vectors: Path, row: Row) -> None:
    if row.expect == "pass":
        _validate_row(vectors, row)
        return
    with pytest.raises(MatterError) as info:
        _validate_row(vectors, row)
    assert info.value.rule == EXPECTED_RULES[row.path], f"{row.reason}: {info.value}"
    assert str(info.value).startswith(f"{info.value.rule}: ")


def test_every_must_fail_vector_has_an_expected_rule(vectors: Path) -> None:
    failing = {
        line.split("\t")[0]
        for line in (vectors / "manifest.tsv").read_text().splitlines()
        if line and not line.startswith("#") and line.split("\t")[3] == "fail"
    }
    assert failing == set(EXPECTED_RULES)


# ---------------------------------------------------------------- VID/PID extraction

_OID_VID: Final = x509.NameAttribute(oids.VENDOR_ID, "FFF1")
_OID_PID: Final = x509.NameAttribute(oids.PRODUCT_ID, "00B1")

# gen_com_dut_test_vectors.py VIDPID_FALLBACK_ENCODING_TEST_CASES (spec examples 01-09).
FALLBACK_CASES: Final = [
    ("ok/fallback-01", "ACME Matter Devel DAC 5CDA9899 Mvid:FFF1 Mpid:00B1", (), (0xFFF1, 0xB1)),
    ("ok/fallback-02", "ACME Matter Devel DAC 5CDA9899 Mpid:00B1 Mvid:FFF1", (), (0xFFF1, 0xB1)),
    ("ok/fallback-03", "Mpid:00B1,ACME Matter Devel DAC 5CDA9899,Mvid:FFF1", (), (0xFFF1, 0xB1)),
    ("ok/fallback-04", "ACME Matter Devel DAC 5CDA9899 Mvid:FFF1Mpid:00B1", (), (0xFFF1, 0xB1)),
    ("ok/fallback-05", "Mvid:FFF1ACME Matter Devel DAC 5CDAMpid:00B19899", (), (0xFFF1, 0xB1)),
    ("fail/fallback-06", "ACME Matter Devel DAC 5CDA9899 Mvid:FF1 Mpid:00B1", (), None),
    ("fail/fallback-07", "ACME Matter Devel DAC 5CDA9899 Mvid:fff1 Mpid:00B1", (), None),
    ("fail/fallback-08", "ACME Matter Devel DAC 5CDA9899 Mvid:FFF1 Mpid:B1", (), None),
    ("fail/fallback-09", "ACME Matter Devel DAC 5CDA9899 Mpid: Mvid:FFF1", (), None),
    ("fail/fallback-10", "Mvid:FFF Mpid:00B10x", (), None),
    ("ok/fallback-11", "MpidMvid:FFF10 Matter Test Mpid:00B1", (), (0xFFF1, 0xB1)),
    ("fail/fallback-12", "Matter Devel DAC Mpid:Mvid:Fff1", (), None),
    ("ok/fallback-13-vid-missing", "Matter Devel DAC Mpid:00B1 MVID:FFF1", (), (None, 0xB1)),
    ("ok/fallback-14-none", "Matter Devel DAC Mpid_00B1 Mvid_FFF1", (), (None, None)),
    (
        "ok/oid-wins-15",
        "ACME Matter Devel DAC 5CDA9899 Mvid:FFF2 Mpid:00B2",
        (_OID_VID, _OID_PID),
        (0xFFF1, 0xB1),
    ),
    ("ok/oid-only-pid-17", "Mvid:FFF1", (_OID_PID,), (None, 0xB1)),
    ("ok/oid-ignores-bad-cn", "Mvid:FF1", (_OID_VID, _OID_PID), (0xFFF1, 0xB1)),
]


def _self_signed(name: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NB)
        .not_valid_after(profiles.NO_EXPIRY)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("common_name", "oid_attrs", "expected"),
    [pytest.param(cn, attrs, exp, id=case) for case, cn, attrs, exp in FALLBACK_CASES],
)
def test_vid_pid_extraction(
    common_name: str,
    oid_attrs: Sequence[x509.NameAttribute[str]],
    expected: tuple[int | None, int | None] | None,
) -> None:
    cert = _self_signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), *oid_attrs])
    )
    if expected is None:
        with pytest.raises(MatterError) as info:
            rules.extract_vid_pid(cert)
        assert info.value.rule is Rule.VIDPID_FALLBACK
        return
    got = rules.extract_vid_pid(cert)
    assert (got.vendor_id, got.product_id) == expected
    assert got.from_common_name == (not oid_attrs and expected != (None, None))


def test_vid_pid_only_first_64_bytes_of_cn_are_scanned() -> None:
    # ub-common-name is 64; cryptography warns about the longer CN this test needs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        long_cn = x509.NameAttribute(NameOID.COMMON_NAME, "x" * 60 + "Mvid:FFF1", _validate=False)
    assert rules.extract_vid_pid(_self_signed(x509.Name([long_cn]))) == rules.VidPid(None, None)


def test_duplicate_vid_attribute_is_refused() -> None:
    cert = _self_signed(x509.Name([_OID_VID, _OID_VID]))
    with pytest.raises(MatterError) as info:
        rules.extract_vid_pid(cert)
    assert info.value.rule is Rule.VID_FORMAT


# ---------------------------------------------------------------- hand-made refusals

Extensions = dict[str, tuple[x509.ExtensionType, bool] | None]
_LEAF_KU: Final = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
_CA_KU: Final = x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _issued(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate,
    signer: ec.EllipticCurvePrivateKey,
    extensions: Extensions,
    *,
    not_before: datetime = NB,
    algorithm: hashes.SHA256 | hashes.SHA384 | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(0x1234)
        .not_valid_before(not_before)
        .not_valid_after(profiles.NO_EXPIRY)
    )
    for entry in extensions.values():
        if entry is not None:
            builder = builder.add_extension(entry[0], critical=entry[1])
    return builder.sign(signer, algorithm or hashes.SHA256())


def _leaf_extensions(public_key: ec.EllipticCurvePublicKey, issuer: x509.Certificate) -> Extensions:
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return {
        "bc": (x509.BasicConstraints(ca=False, path_length=None), True),
        "ku": (_LEAF_KU, True),
        "ski": (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        "aki": (x509.AuthorityKeyIdentifier(issuer_ski.digest, None, None), False),
    }


def _dac_subject(vid: str = "FFF1", pid: str = "8000", extra: str = "") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "crafted DAC" + extra),
            x509.NameAttribute(oids.VENDOR_ID, vid),
            x509.NameAttribute(oids.PRODUCT_ID, pid),
        ]
    )


def _raw(oid: x509.ObjectIdentifier, hex_value: str) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, bytes.fromhex(hex_value))


DAC_CASES: Final[list[tuple[str, Extensions, Rule | None]]] = [
    ("ok/baseline", {}, None),
    (
        "fail/dac-ku-keycertsign",
        {"ku": (x509.KeyUsage(*[True] + [False] * 4 + [True] + [False] * 3), True)},
        Rule.DAC_KEY_USAGE,
    ),
    ("fail/dac-ku-noncritical", {"ku": (_LEAF_KU, False)}, Rule.KEY_USAGE),
    (
        "fail/dac-ca-true",
        {"bc": (x509.BasicConstraints(ca=True, path_length=None), True)},
        Rule.DAC_CA,
    ),
    (
        "fail/dac-pathlen-without-ca",
        {"bc": (_raw(ExtensionOID.BASIC_CONSTRAINTS, "3003020100"), True)},
        Rule.DAC_PATHLEN,
    ),
    (
        "fail/dac-bc-explicit-ca-false",
        {"bc": (_raw(ExtensionOID.BASIC_CONSTRAINTS, "3003010100"), True)},
        Rule.DER,
    ),
    (
        "fail/dac-ku-trailing-zero-bits",
        {"ku": (_raw(ExtensionOID.KEY_USAGE, "03020080"), True)},
        Rule.DER,
    ),
    ("fail/dac-ski-19-bytes", {"ski": (x509.SubjectKeyIdentifier(b"\x01" * 19), False)}, Rule.SKI),
    (
        "fail/dac-ski-critical",
        {"ski": (x509.SubjectKeyIdentifier(b"\x01" * 20), True)},
        Rule.EXT_CRITICAL,
    ),
    ("fail/dac-aki-missing", {"aki": None}, Rule.AKI),
    (
        "fail/dac-aki-with-issuer-serial",
        {"aki": (x509.AuthorityKeyIdentifier(b"\x02" * 20, [x509.DNSName("x.example")], 7), False)},
        Rule.AKI,
    ),
    (
        "fail/dac-aki-not-issuer-ski",
        {"aki": (x509.AuthorityKeyIdentifier(b"\x02" * 20, None, None), False)},
        Rule.CHAIN_AKI,
    ),
    (
        "fail/dac-critical-san",
        {"san": (x509.SubjectAlternativeName([x509.DNSName("dac.example")]), True)},
        Rule.EXT_CRITICAL,
    ),
    (
        "ok/dac-noncritical-san-and-eku",
        {
            "san": (x509.SubjectAlternativeName([x509.DNSName("dac.example")]), False),
            "eku": (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), True),
        },
        None,
    ),
]


@pytest.mark.parametrize(
    ("changes", "rule"), [pytest.param(c, r, id=case) for case, c, r in DAC_CASES]
)
def test_dac_rules(
    pai: x509.Certificate,
    pai_key: ec.EllipticCurvePrivateKey,
    changes: Extensions,
    rule: Rule | None,
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    extensions = _leaf_extensions(public_key, pai) | changes
    dac = _issued(_dac_subject(), public_key, pai, pai_key, extensions)
    if rule is None:
        rules.validate_certificate(dac, MatterKind.DAC, issuer=pai)
        return
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(dac, MatterKind.DAC, issuer=pai)
    assert info.value.rule is rule


def test_dac_refusals_outside_extensions(
    pai: x509.Certificate, pai_key: ec.EllipticCurvePrivateKey
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    cases: list[tuple[x509.Certificate, Rule]] = [
        (_issued(_dac_subject(), p384, pai, pai_key, _leaf_extensions(p384, pai)), Rule.CURVE),
        (
            _issued(
                _dac_subject(),
                p256,
                pai,
                pai_key,
                _leaf_extensions(p256, pai),
                algorithm=hashes.SHA384(),
            ),
            Rule.SIG_ALG,
        ),
        (
            _issued(_dac_subject(pid="8001"), p256, pai, pai_key, _leaf_extensions(p256, pai)),
            Rule.CHAIN_PID_MISMATCH,
        ),
        (
            _issued(_dac_subject(vid="FFF2"), p256, pai, pai_key, _leaf_extensions(p256, pai)),
            Rule.CHAIN_VID_MISMATCH,
        ),
        (
            _issued(
                _dac_subject(),
                p256,
                pai,
                pai_key,
                _leaf_extensions(p256, pai),
                not_before=datetime(2023, 12, 31, tzinfo=UTC),
            ),
            Rule.CHAIN_VALIDITY,
        ),
        (
            _issued(
                _dac_subject(),
                p256,
                pai,
                ec.generate_private_key(ec.SECP256R1()),
                _leaf_extensions(p256, pai),
            ),
            Rule.CHAIN_SIGNATURE,
        ),
        (
            _issued(
                _dac_subject(extra=" " + "x" * 40),
                p256,
                pai,
                pai_key,
                _leaf_extensions(p256, pai)
                | {
                    "san": (
                        x509.SubjectAlternativeName([x509.DNSName(c * 60) for c in "def"]),
                        False,
                    )
                },
            ),
            Rule.DER_SIZE,
        ),
    ]
    for cert, rule in cases:
        with pytest.raises(MatterError) as info:
            rules.validate_certificate(cert, MatterKind.DAC, issuer=pai)
        assert info.value.rule is rule, info.value


def test_dac_issuer_dn_must_be_byte_equal(
    pai: x509.Certificate, pai_key: ec.EllipticCurvePrivateKey
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    # Same attribute values, but the VID as PrintableString: equal text, different DER.
    reordered = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "privca Test PAI"),
            x509.NameAttribute(oids.VENDOR_ID, "FFF1", _type=_ASN1Type.PrintableString),
            x509.NameAttribute(oids.PRODUCT_ID, "8000"),
        ]
    )
    dac = (
        x509.CertificateBuilder()
        .subject_name(_dac_subject())
        .issuer_name(reordered)
        .public_key(public_key)
        .serial_number(5)
        .not_valid_before(NB)
        .not_valid_after(profiles.NO_EXPIRY)
    )
    for entry in _leaf_extensions(public_key, pai).values():
        assert entry is not None
        dac = dac.add_extension(entry[0], critical=entry[1])
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(dac.sign(pai_key, hashes.SHA256()), MatterKind.DAC, pai)
    assert info.value.rule is Rule.CHAIN_ISSUER_DN


# ---------------------------------------------------------------- operational refusals


def _noc_subject(*attrs: x509.NameAttribute[str]) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(oids.NODE_ID, "DEDEDEDE00010001"),
            x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
            *attrs,
        ]
    )


def _noc_extensions(public_key: ec.EllipticCurvePublicKey, issuer: x509.Certificate) -> Extensions:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])
    return _leaf_extensions(public_key, issuer) | {"eku": (eku, True)}


def _cat(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oids.CASE_AUTH_TAG, value)


NOC_SUBJECT_CASES: Final = [
    ("ok/baseline", _noc_subject(_cat("00010001"), _cat("00020005")), None),
    (
        "fail/cat-duplicate-identifier",
        _noc_subject(_cat("00010001"), _cat("00010002")),
        Rule.NOC_CAT_DUPLICATE,
    ),
    ("fail/cat-version-0", _noc_subject(_cat("00010000")), Rule.NOC_CAT_VERSION),
    (
        "fail/four-cats",
        _noc_subject(*(_cat(f"000{i}0001") for i in range(1, 5))),
        Rule.NOC_CAT_COUNT,
    ),
    (
        "fail/node-id-printable",
        x509.Name(
            [
                x509.NameAttribute(
                    oids.NODE_ID, "DEDEDEDE00010001", _type=_ASN1Type.PrintableString
                ),
                x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
            ]
        ),
        Rule.DN_VALUE,
    ),
    (
        "fail/node-id-15-digits",
        x509.Name(
            [
                x509.NameAttribute(oids.NODE_ID, "DEDEDE00010001F"),
                x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
            ]
        ),
        Rule.DN_VALUE,
    ),
    (
        "fail/node-id-zero",
        x509.Name(
            [
                x509.NameAttribute(oids.NODE_ID, "0" * 16),
                x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
            ]
        ),
        Rule.NOC_NODE_ID,
    ),
    (
        "fail/two-node-ids",
        _noc_subject(x509.NameAttribute(oids.NODE_ID, "0000000000000002")),
        Rule.NOC_NODE_ID,
    ),
    (
        "fail/fabric-zero",
        x509.Name(
            [
                x509.NameAttribute(oids.NODE_ID, "0000000000000001"),
                x509.NameAttribute(oids.FABRIC_ID, "0" * 16),
            ]
        ),
        Rule.FABRIC_ID,
    ),
    (
        "fail/rcac-id-in-noc",
        _noc_subject(x509.NameAttribute(oids.RCAC_ID, "0000000000000001")),
        Rule.NOC_SUBJECT,
    ),
    (
        "fail/cn-ia5string",
        _noc_subject(x509.NameAttribute(NameOID.COMMON_NAME, "n", _type=_ASN1Type.IA5String)),
        Rule.DN,
    ),
    ("fail/vid-attribute", _noc_subject(x509.NameAttribute(oids.VENDOR_ID, "FFF1")), Rule.DN),
    (
        "fail/multi-valued-rdn",
        x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(oids.NODE_ID, "0000000000000001"),
                        x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
                    ]
                )
            ]
        ),
        Rule.DN,
    ),
    (
        "ok/cn-printable",
        _noc_subject(
            x509.NameAttribute(NameOID.COMMON_NAME, "node", _type=_ASN1Type.PrintableString)
        ),
        None,
    ),
]


@pytest.mark.parametrize(
    ("subject", "rule"), [pytest.param(s, r, id=case) for case, s, r in NOC_SUBJECT_CASES]
)
def test_noc_subject_rules(
    icac: x509.Certificate,
    icac_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    rule: Rule | None,
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    noc = _issued(subject, public_key, icac, icac_key, _noc_extensions(public_key, icac))
    if rule is None:
        rules.validate_certificate(noc, MatterKind.NOC, issuer=icac)
        return
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(noc, MatterKind.NOC, issuer=icac)
    assert info.value.rule is rule


def test_noc_extension_and_time_rules(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    base = _noc_extensions(public_key, icac)
    extra_purpose = x509.ExtendedKeyUsage(
        [
            ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CODE_SIGNING,
        ]
    )
    cases: list[tuple[Extensions, datetime, Rule]] = [
        ({"eku": (extra_purpose, True)}, NB, Rule.NOC_EKU),
        ({"eku": None}, NB, Rule.NOC_EKU),
        (
            {"cdp": (_raw(x509.ObjectIdentifier("1.3.6.1.4.1.37244.99"), "0500"), True)},
            NB,
            Rule.EXT_CRITICAL,
        ),
        # Matter epoch 0 means "no expiry" in TLV, so notBefore 2000-01-01T00:00:00Z cannot
        # survive the round trip.
        ({}, datetime(2000, 1, 1, tzinfo=UTC), Rule.VALIDITY),
    ]
    for changes, not_before, rule in cases:
        noc = _issued(
            _noc_subject(), public_key, icac, icac_key, base | changes, not_before=not_before
        )
        with pytest.raises(MatterError) as info:
            rules.validate_certificate(noc, MatterKind.NOC)
        assert info.value.rule is rule, info.value
    # A non-critical unknown extension rides along as a TLV "future extension".
    future = {"future": (_raw(x509.ObjectIdentifier("1.3.6.1.4.1.37244.99"), "0500"), False)}
    rules.validate_certificate(
        _issued(_noc_subject(), public_key, icac, icac_key, base | future), MatterKind.NOC, icac
    )


def test_noc_fabric_must_match_issuer(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey
) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    subject = x509.Name(
        [
            x509.NameAttribute(oids.NODE_ID, "0000000000000001"),
            x509.NameAttribute(oids.FABRIC_ID, "0000000000000001"),
        ]
    )
    noc = _issued(subject, public_key, icac, icac_key, _noc_extensions(public_key, icac))
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(noc, MatterKind.NOC)
    assert info.value.rule is Rule.CHAIN_FABRIC_MISMATCH


def test_roots_must_be_self_signed(
    paa_key: ec.EllipticCurvePrivateKey, rcac: x509.Certificate, icac: x509.Certificate
) -> None:
    public_key = paa_key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    other = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PAA")]))
        .issuer_name(other)
        .public_key(public_key)
        .serial_number(9)
        .not_valid_before(NB)
        .not_valid_after(profiles.NO_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_CA_KU, critical=True)
        .add_extension(ski, critical=False)
    )
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(builder.sign(paa_key, hashes.SHA256()), MatterKind.PAA)
    assert info.value.rule is Rule.PAA_SELF_SIGNED
    rules.validate_certificate(rcac, MatterKind.RCAC, issuer=rcac)
    with pytest.raises(MatterError) as info:
        rules.validate_certificate(rcac, MatterKind.RCAC, issuer=icac)
    assert info.value.rule is Rule.CHAIN_DEPTH


# ---------------------------------------------------------------- chains


def test_chain_shapes(
    rcac: x509.Certificate,
    icac: x509.Certificate,
    icac_key: ec.EllipticCurvePrivateKey,
    pai: x509.Certificate,
    paa: x509.Certificate,
) -> None:
    noc = profiles.build_noc(
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        issuer_cert=icac,
        issuer_key=icac_key,
        node_id=1,
        fabric_id=FABRIC,
        not_before=NB,
        not_after=None,
        serial=77,
    )
    rules.validate_chain(noc, MatterKind.NOC, [icac, rcac])
    rules.validate_chain(icac, MatterKind.ICAC, [rcac])
    rules.validate_chain(rcac, MatterKind.RCAC, [])
    rules.validate_chain(pai, MatterKind.PAI, [paa])
    failures: list[tuple[x509.Certificate, MatterKind, list[x509.Certificate], Rule]] = [
        (noc, MatterKind.NOC, [icac, icac, rcac], Rule.CHAIN_DEPTH),
        (noc, MatterKind.NOC, [], Rule.CHAIN_INCOMPLETE),
        (noc, MatterKind.NOC, [rcac], Rule.CHAIN_ISSUER_DN),
        (pai, MatterKind.PAI, [], Rule.CHAIN_INCOMPLETE),
        (pai, MatterKind.PAI, [paa, paa], Rule.CHAIN_DEPTH),
        (icac, MatterKind.ICAC, [paa], Rule.DN),
        (rcac, MatterKind.RCAC, [rcac], Rule.CHAIN_DEPTH),
    ]
    for cert, kind, chain, rule in failures:
        with pytest.raises(MatterError) as info:
            rules.validate_chain(cert, kind, chain)
        assert info.value.rule is rule, info.value


def test_chain_fabric_consistency_skips_icac_without_fabric(
    rcac: x509.Certificate, rcac_key: ec.EllipticCurvePrivateKey
) -> None:
    icac_key = ec.generate_private_key(ec.SECP256R1())
    icac = profiles.build_icac(
        icac_key.public_key(),
        issuer_cert=rcac,
        issuer_key=rcac_key,
        icac_id=4,
        not_before=NB,
        not_after=None,
        serial=12,
    )
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_fabric = x509.Name(
        [
            x509.NameAttribute(oids.NODE_ID, "0000000000000001"),
            x509.NameAttribute(oids.FABRIC_ID, "0000000000000002"),
        ]
    )
    noc = _issued(other_fabric, public_key, icac, icac_key, _noc_extensions(public_key, icac))
    rules.validate_certificate(noc, MatterKind.NOC, issuer=icac)
    with pytest.raises(MatterError) as info:
        rules.validate_chain(noc, MatterKind.NOC, [icac, rcac])
    assert info.value.rule is Rule.CHAIN_FABRIC_MISMATCH


def test_rcac_with_pathlen_zero_cannot_have_icac_below() -> None:
    strict_key = ec.generate_private_key(ec.SECP256R1())
    strict_root = profiles.build_rcac(
        strict_key, rcac_id=99, not_before=NB, not_after=None, serial=13, path_len=0
    )
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    icac_subject = x509.Name([x509.NameAttribute(oids.ICAC_ID, "0000000000000005")])
    extensions = _leaf_extensions(public_key, strict_root) | {
        "bc": (x509.BasicConstraints(ca=True, path_length=0), True),
        "ku": (_CA_KU, True),
    }
    child = _issued(icac_subject, public_key, strict_root, strict_key, extensions)
    with pytest.raises(MatterError) as info:
        rules.validate_chain(child, MatterKind.ICAC, [strict_root])
    assert info.value.rule is Rule.CHAIN_PATHLEN


# ---------------------------------------------------------------- helpers


def test_infer_kind_and_ids(
    paa: x509.Certificate, pai: x509.Certificate, rcac: x509.Certificate, icac: x509.Certificate
) -> None:
    assert rules.infer_kind(paa) is MatterKind.PAA
    assert rules.infer_kind(pai) is MatterKind.PAI
    assert rules.infer_kind(rcac) is MatterKind.RCAC
    assert rules.infer_kind(icac) is MatterKind.ICAC
    assert rules.extract_operational_ids(icac) == rules.OperationalIds(
        fabric_id=FABRIC, icac_id=0xCACA_CACA_0000_0003
    )
    assert rules.extract_vid_pid(pai) == rules.VidPid(0xFFF1, 0x8000)


def test_load_certificate_refuses_garbage() -> None:
    for data, rule in [
        (b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", Rule.DER),
        (b"\x30\x03\x02\x01", Rule.DER),
        (b"\x30\x80\x00\x00", Rule.DER),
    ]:
        with pytest.raises(MatterError) as info:
            rules.load_certificate(data)
        assert info.value.rule is rule
