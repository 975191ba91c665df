"""Matter TLV certificate codec: upstream byte-exact vectors, round trips, refusals."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca.matter import oids, profiles, rules, tlv
from server.ca.matter.errors import MatterError, Rule

# connectedhomeip credentials/test/operational-certificates/Chip-Test-{Root01,ICA02}-Cert.chip-b64:
# the SDK's own TLV encodings of the operational/ PEMs in the shared vectors.
UPSTREAM_TLV: Final = {
    "operational/Chip-Test-Root01-Cert.pem": (
        "FTABCFNMRYJzYjUUJAIBNwMnFAEAAADKysrKGCYE7xcbJyYFbrW5TDcGJxQBAAAAysrKyhgkBwEkCAEwCUEE"
        "O4hGDsloel0PO0s7E/zSmcL21QUdAD7knJkkz5j094DrIP03yNNYNH9fh9CMMhPlQK8RurkTfkk1TwxbY0Pe"
        "YzcKNQEpARgkAmAwBBTMEwivgs/uUF6yO1e/6GoxFmVTXzAFFMwTCK+Cz+5QXrI7V7/oajEWZVNfGDALQPfw"
        "CSaQSU5GyLHFy9GlCF4eZdQ2D5jpbE6OSV3F4hbQv6I9j1dHDYn92vA/BGSwro4flW1vZ6MRJDhYJGiXgKkY"
    ),
    "operational/Chip-Test-ICA02-Cert.pem": (
        "FTABCBzFj7/ulkVKJAIBNwMnFAIAAADKysrKJxUdAAAAAACw+hgmBO8XGycmBW61uUw3BicTBAAAAMrKysonFR0A"
        "AAAAALD6GCQHASQIATAJQQT6n9KMt2p37w45MNWeQSvRjrIO/9UZfvRxOTeTkDeKSAQySBicxKl0F3V+Dnt2cjTZ"
        "ywPcdSiamXS+Pfdhp1a+Nwo1ASkBJAIAGCQCYDAEFOHnbmd3hR3XdBa93TXsPBN8RyncMAUUYr65ZxyRw1XIbwb6"
        "bAiAFFHhoOoYMAtAb/pzwEJsnKst5iB26+JLXnniu5jyFKtu6PBDfFV950PHU9rn3fOwJ8LxPiPOOjq51DT8fqFb"
        "udZ3w2yci1UVQhg="
    ),
}
OPERATIONAL_PASS: Final = [
    "operational/Chip-Test-Root01-Cert.pem",
    "operational/Chip-Test-ICA02-Cert.pem",
    "synthetic/op-rcac-valid.pem",
    "synthetic/op-icac-valid.pem",
    "synthetic/op-noc-valid.pem",
]
NB: Final = datetime(2024, 6, 1, tzinfo=UTC)
FABRIC: Final = 0xFAB0_0000_0000_001D


def _der(vectors: Path, path: str) -> bytes:
    return rules.load_certificate((vectors / path).read_bytes()).public_bytes(Encoding.DER)


@pytest.mark.parametrize("path", list(UPSTREAM_TLV), ids=["ok/root01", "ok/ica02"])
def test_matches_upstream_tlv_byte_for_byte(vectors: Path, path: str) -> None:
    der = _der(vectors, path)
    expected = base64.b64decode(UPSTREAM_TLV[path])
    assert tlv.x509_to_tlv(der) == expected
    assert tlv.tlv_to_x509(expected) == der


@pytest.mark.parametrize(
    "path", OPERATIONAL_PASS, ids=[f"ok/{p.split('/')[-1][:-4]}" for p in OPERATIONAL_PASS]
)
def test_operational_vectors_round_trip(vectors: Path, path: str) -> None:
    der = _der(vectors, path)
    encoded = tlv.check_round_trip(der)
    assert len(encoded) <= tlv.MAX_TLV_LENGTH
    assert tlv.tlv_to_x509(encoded) == der


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        pytest.param("synthetic/att-dac-valid-oid.pem", Rule.DN, id="fail/vid-oid-has-no-tlv"),
        pytest.param(
            "synthetic/op-noc-fail-too-many-attrs.pem", Rule.DER_SIZE, id="fail/der-over-600"
        ),
        pytest.param(
            "synthetic/op-noc-fail-critical-unknown-ext.pem",
            Rule.EXT_CRITICAL,
            id="fail/critical-future-extension",
        ),
        pytest.param("synthetic/op-noc-fail-sha384.pem", Rule.SIG_ALG, id="fail/sha384"),
        pytest.param(
            "synthetic/op-noc-fail-nodeid-lowercase.pem", Rule.DN_VALUE, id="fail/lowercase-hex"
        ),
        pytest.param(
            "synthetic/op-noc-fail-eku-noncritical.pem", Rule.EKU, id="fail/eku-noncritical"
        ),
        pytest.param(
            "struct/dac_sig_curve_secp256k1/dac-Cert.pem", Rule.DN, id="fail/attestation-dn"
        ),
    ],
)
def test_x509_to_tlv_refusals(vectors: Path, path: str, rule: Rule) -> None:
    with pytest.raises(MatterError) as info:
        tlv.x509_to_tlv(_der(vectors, path))
    assert info.value.rule is rule


def _mutate(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        assert data.count(old) == 1
        return data.replace(old, new)

    return apply


def _tlv_signature_63(data: bytes) -> bytes:
    assert data[-68:-65] == b"\x30\x0b\x40"
    return data[:-68] + b"\x30\x0b\x3f" + data[-65:-2] + b"\x18"


TLV_MUTATIONS: Final = [
    ("fail/truncated", lambda d: d[:-1], Rule.TLV),
    ("fail/stray-end", lambda d: d + b"\x18", Rule.TLV),
    ("fail/two-top-level-elements", lambda d: d + b"\x04\x00", Rule.TLV),
    ("fail/fully-qualified-tag", lambda d: b"\xd5" + d[1:], Rule.TLV),
    ("fail/sig-algorithm-2", _mutate(b"\x24\x02\x01\x37", b"\x24\x02\x02\x37"), Rule.SIG_ALG),
    ("fail/curve-2", _mutate(b"\x24\x08\x01", b"\x24\x08\x02"), Rule.CURVE),
    ("fail/unknown-extension-tag", _mutate(b"\x24\x02\x60", b"\x24\x07\x60"), Rule.TLV),
    ("fail/key-usage-bit-10", _mutate(b"\x24\x02\x60", b"\x25\x02\x00\x04"), Rule.KEY_USAGE),
    ("fail/signature-63-bytes", _tlv_signature_63, Rule.SIG_ALG),
    ("fail/over-400-bytes", lambda d: d + bytes(400), Rule.TLV_SIZE),
    ("fail/unknown-dn-tag", _mutate(b"\x37\x03\x27\x14", b"\x37\x03\x27\x30"), Rule.DN),
]


@pytest.mark.parametrize(
    ("mutate", "rule"), [pytest.param(m, r, id=case) for case, m, r in TLV_MUTATIONS]
)
def test_tlv_to_x509_refusals(mutate: Callable[[bytes], bytes], rule: Rule) -> None:
    root = base64.b64decode(UPSTREAM_TLV["operational/Chip-Test-Root01-Cert.pem"])
    with pytest.raises(MatterError) as info:
        tlv.tlv_to_x509(mutate(root))
    assert info.value.rule is rule


def test_tlv_accepts_wider_integer_encodings() -> None:
    # The SDK reader accepts any integer width; re-encoding is still canonical DER.
    root = base64.b64decode(UPSTREAM_TLV["operational/Chip-Test-Root01-Cert.pem"])
    wide = root.replace(b"\x24\x02\x60", b"\x25\x02\x60\x00")
    assert tlv.tlv_to_x509(wide) == tlv.tlv_to_x509(root)


def _noc(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    not_before: datetime = NB,
    not_after: datetime = profiles.NO_EXPIRY,
) -> bytes:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(0x7F_FFFF_FFFF_FFFF_FFFF)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(issuer_ski.digest, None, None), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def _subject(*extra: x509.NameAttribute[str]) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(oids.NODE_ID, "0000000000000042"),
            x509.NameAttribute(oids.FABRIC_ID, f"{FABRIC:016X}"),
            *extra,
        ]
    )


def test_string_types_and_times_round_trip(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey
) -> None:
    printable_cn = x509.NameAttribute(NameOID.COMMON_NAME, "n", _type=_ASN1Type.PrintableString)
    domain = x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")
    utf8_org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zürich")
    der = _noc(
        icac,
        icac_key,
        _subject(printable_cn, domain, utf8_org),
        not_after=datetime(2060, 1, 1, tzinfo=UTC),  # GeneralizedTime from 2050
    )
    tlv.check_round_trip(der)
    rules.validate_certificate(x509.load_der_x509_certificate(der), rules.MatterKind.NOC, icac)


def test_string_type_refusals(icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey) -> None:
    utf8_domain = x509.NameAttribute(
        NameOID.DOMAIN_COMPONENT, "example", _type=_ASN1Type.UTF8String
    )
    ia5_cn = x509.NameAttribute(NameOID.COMMON_NAME, "n", _type=_ASN1Type.IA5String)
    six = _subject(*(x509.NameAttribute(NameOID.COMMON_NAME, str(i)) for i in range(4)))
    for subject, rule in [
        (_subject(utf8_domain), Rule.DN),
        (_subject(ia5_cn), Rule.DN),
        (six, Rule.DN),
        (_subject(x509.NameAttribute(oids.CASE_AUTH_TAG, "00010000")), Rule.NOC_CAT_VERSION),
    ]:
        with pytest.raises(MatterError) as info:
            tlv.x509_to_tlv(_noc(icac, icac_key, subject))
        assert info.value.rule is rule, info.value


def test_matter_epoch_zero_not_before_is_refused(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey
) -> None:
    der = _noc(icac, icac_key, _subject(), not_before=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(MatterError) as info:
        tlv.x509_to_tlv(der)
    assert info.value.rule is Rule.VALIDITY


def test_many_signatures_round_trip(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey
) -> None:
    # ~half of the r and s values need a 0x00 pad in DER and some are shorter than 32
    # bytes; all must survive the raw r||s form.
    lengths = set()
    for _ in range(64):
        der = _noc(icac, icac_key, _subject())
        tlv.check_round_trip(der)
        lengths.add(len(der))
    assert len(lengths) > 1


def test_round_trip_mismatch_is_reported(
    icac: x509.Certificate, icac_key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    der = _noc(icac, icac_key, _subject())
    monkeypatch.setattr(tlv, "tlv_to_x509", lambda data: der[:-1] + bytes((der[-1] ^ 1,)))
    with pytest.raises(MatterError) as info:
        tlv.check_round_trip(der)
    assert info.value.rule is Rule.TLV_ROUND_TRIP
    assert f"byte {len(der) - 1}" in info.value.detail
