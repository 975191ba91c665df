"""Matter certificate builders: valid output, openssl interop, TLV round trip, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from server.ca.matter import oids, profiles, rules, tlv
from server.ca.matter.errors import MatterError, Rule
from server.ca.matter.rules import MatterKind

NB: Final = datetime(2024, 6, 1, tzinfo=UTC)
FABRIC: Final = 0xFAB0_0000_0000_001D


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public() -> ec.EllipticCurvePublicKey:
    return _key().public_key()


@dataclass(frozen=True, slots=True)
class Pki:
    """Both session PKIs plus a VID-only PAI, bundled for parametrized refusals."""

    paa: x509.Certificate
    paa_key: ec.EllipticCurvePrivateKey
    pai: x509.Certificate
    pai_key: ec.EllipticCurvePrivateKey
    rcac: x509.Certificate
    rcac_key: ec.EllipticCurvePrivateKey
    icac: x509.Certificate
    icac_key: ec.EllipticCurvePrivateKey


@pytest.fixture
def pki(
    paa: x509.Certificate,
    paa_key: ec.EllipticCurvePrivateKey,
    pai: x509.Certificate,
    pai_key: ec.EllipticCurvePrivateKey,
    rcac: x509.Certificate,
    rcac_key: ec.EllipticCurvePrivateKey,
    icac: x509.Certificate,
    icac_key: ec.EllipticCurvePrivateKey,
) -> Pki:
    """Bundle the session PKIs."""
    return Pki(paa, paa_key, pai, pai_key, rcac, rcac_key, icac, icac_key)


def _dac(
    pki: Pki,
    *,
    public_key: CertificatePublicKeyTypes | None = None,
    pai_cert: x509.Certificate | None = None,
    pai_key: CertificateIssuerPrivateKeyTypes | None = None,
    name: str = "privca DAC 0001",
    vid: int | None = 0xFFF1,
    pid: int | None = 0x8000,
    not_before: datetime = NB,
    not_after: datetime | None = None,
    serial: int = 0x5EED_0001,
) -> x509.Certificate:
    return profiles.build_dac(
        public_key or _public(),
        pai_cert=pai_cert or pki.pai,
        pai_key=pai_key or pki.pai_key,
        name=name,
        vid=vid,
        pid=pid,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )


def _pai(
    pki: Pki,
    *,
    public_key: CertificatePublicKeyTypes | None = None,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    vid: int | None = 0xFFF1,
    pid: int | None = None,
) -> x509.Certificate:
    return profiles.build_pai(
        public_key or _public(),
        issuer_cert=issuer_cert or pki.paa,
        issuer_key=issuer_key or pki.paa_key,
        name="privca PAI 2",
        vid=vid,
        pid=pid,
        not_before=NB,
        not_after=None,
        serial=0x5EED_0002,
    )


def _icac(
    pki: Pki,
    *,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    fabric_id: int | None = FABRIC,
    path_len: int | None = 0,
) -> x509.Certificate:
    return profiles.build_icac(
        _public(),
        issuer_cert=issuer_cert or pki.rcac,
        issuer_key=issuer_key or pki.rcac_key,
        icac_id=0x1C,
        fabric_id=fabric_id,
        not_before=NB,
        not_after=None,
        serial=0x5EED_0003,
        path_len=path_len,
    )


def _noc(
    pki: Pki,
    *,
    public_key: CertificatePublicKeyTypes | None = None,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    node_id: int = 0xDEDE_DEDE_0001_0001,
    fabric_id: int = FABRIC,
    cats: Sequence[int] = (0xABCD_0001,),
    not_before: datetime = NB,
    not_after: datetime | None = None,
    serial: int = 0x5EED_0004,
) -> x509.Certificate:
    return profiles.build_noc(
        public_key or _public(),
        issuer_cert=issuer_cert or pki.icac,
        issuer_key=issuer_key or pki.icac_key,
        node_id=node_id,
        fabric_id=fabric_id,
        cats=cats,
        not_before=not_before,
        not_after=not_after,
        serial=serial,
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# ---------------------------------------------------------------- valid output


def test_attestation_builders_pass_the_validator(pki: Pki) -> None:
    rules.validate_certificate(pki.paa, MatterKind.PAA)
    rules.validate_chain(pki.pai, MatterKind.PAI, [pki.paa])
    dac = _dac(pki)
    rules.validate_chain(dac, MatterKind.DAC, [pki.pai, pki.paa])
    assert rules.extract_vid_pid(dac) == rules.VidPid(0xFFF1, 0x8000)
    assert dac.not_valid_after_utc == profiles.NO_EXPIRY
    ski = x509.SubjectKeyIdentifier.from_public_key(dac.public_key()).digest
    assert dac.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == ski
    assert dac.signature_hash_algorithm is not None
    assert dac.signature_hash_algorithm.name == "sha256"

    # A non-VID-scoped PAA and a VID-only PAI accept any PID below them.
    root_key = _key()
    open_paa = profiles.build_paa(
        root_key,
        name="privca open PAA",
        vid=None,
        not_before=NB,
        not_after=datetime(2044, 1, 1, tzinfo=UTC),
        serial=77,
        path_len=None,
    )
    pai_key = _key()
    vid_pai = _pai(
        pki, issuer_cert=open_paa, issuer_key=root_key, vid=0xFFF2, public_key=pai_key.public_key()
    )
    factory = profiles.DacFactory(vid_pai, pai_key)
    assert (factory.vendor_id, factory.product_id) == (0xFFF2, None)
    for pid in (0x0001, 0x8001, 0xFFFF):
        dac = factory.build(
            _public(), name="d", vid=0xFFF2, pid=pid, not_before=NB, not_after=None, serial=pid
        )
        rules.validate_chain(dac, MatterKind.DAC, [vid_pai, open_paa])


def test_operational_builders_pass_validator_and_round_trip(pki: Pki) -> None:
    noc = _noc(pki, cats=(0x0001_0001, 0x0002_0001, 0xFFFF_FFFF))
    direct = _noc(
        pki,
        issuer_cert=pki.rcac,
        issuer_key=pki.rcac_key,
        cats=(),
        not_after=datetime(2051, 1, 1, tzinfo=UTC),
    )
    bare_key = _key()
    bare_root = profiles.build_rcac(
        bare_key, rcac_id=0, not_before=NB, not_after=datetime(2049, 12, 31, tzinfo=UTC), serial=1
    )
    rules.validate_chain(noc, MatterKind.NOC, [pki.icac, pki.rcac])
    rules.validate_chain(direct, MatterKind.NOC, [pki.rcac])
    rules.validate_chain(pki.icac, MatterKind.ICAC, [pki.rcac])
    rules.validate_chain(bare_root, MatterKind.RCAC, [])
    for cert in (pki.rcac, pki.icac, noc, direct, bare_root):
        der = _der(cert)
        assert tlv.tlv_to_x509(tlv.check_round_trip(der)) == der
        assert len(der) <= tlv.MAX_DER_LENGTH
    assert rules.extract_operational_ids(noc) == rules.OperationalIds(
        node_id=0xDEDE_DEDE_0001_0001,
        fabric_id=FABRIC,
        cats=(0x0001_0001, 0x0002_0001, 0xFFFF_FFFF),
    )


def test_noc_size_budget(pki: Pki) -> None:
    # Largest NOC the builders make: 3 CATs, no expiry, ICAC issuer with a fabric id.
    cats = (0x0001_0001, 0x0002_0001, 0x0003_0001)
    for _ in range(20):
        noc = _noc(pki, cats=cats, serial=(1 << 63) - 1)
        assert len(_der(noc)) <= tlv.MAX_DER_LENGTH
    with pytest.raises(MatterError) as info:
        _noc(pki, cats=cats, serial=(1 << 127) - 1)
    assert info.value.rule is Rule.DER_SIZE


def test_microseconds_and_timezones_are_normalised(pki: Pki) -> None:
    local = datetime(2024, 6, 1, 14, 30, 15, 999_999, tzinfo=timezone(timedelta(hours=2)))
    dac = _dac(pki, not_before=local)
    assert dac.not_valid_before_utc == datetime(2024, 6, 1, 12, 30, 15, tzinfo=UTC)


def test_dac_factory_is_fast_enough_for_bulk(pki: Pki) -> None:
    factory = profiles.DacFactory(pki.pai, pki.pai_key)
    keys = [_public() for _ in range(200)]
    start = time.perf_counter()
    for serial, key in enumerate(keys, start=1):
        factory.build(
            key,
            name=f"DAC {serial}",
            vid=0xFFF1,
            pid=0x8000,
            not_before=NB,
            not_after=None,
            serial=serial,
        )
    # ~0.25 ms each on a laptop; the bound only catches an accidental O(n) or re-validation.
    assert time.perf_counter() - start < 4.0


# ---------------------------------------------------------------- openssl


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI")
        pytest.skip("openssl not installed")
    return path


def _verify(tmp_path: Path, root: x509.Certificate, chain: list[x509.Certificate]) -> str:
    files = []
    for name, cert in [("root", root), *((f"c{i}", c) for i, c in enumerate(chain))]:
        file = tmp_path / f"{name}.pem"
        file.write_bytes(cert.public_bytes(Encoding.PEM))
        files.append(str(file))
    untrusted = ["-untrusted", files[2]] if len(files) == 3 else []
    result = subprocess.run(
        [_openssl(), "verify", "-x509_strict", "-CAfile", files[0], *untrusted, files[1]],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.stdout + result.stderr if result.returncode else "OK"


def test_openssl_verifies_attestation_chain(pki: Pki, tmp_path: Path) -> None:
    dac = _dac(pki)
    assert _verify(tmp_path, pki.paa, [dac, pki.pai]) == "OK"
    # Negative control: the same DAC does not chain to a different PAA.
    other_key = _key()
    other_paa = profiles.build_paa(
        other_key, name="privca Test PAA", vid=0xFFF1, not_before=NB, not_after=None, serial=1
    )
    assert _verify(tmp_path, other_paa, [dac, pki.pai]) != "OK"


def test_openssl_verifies_operational_chain(pki: Pki, tmp_path: Path) -> None:
    assert _verify(tmp_path, pki.rcac, [_noc(pki), pki.icac]) == "OK"
    assert _verify(tmp_path, pki.rcac, [pki.icac]) == "OK"


# ---------------------------------------------------------------- refusals


def _bad_ku_pai(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    paa_ski = pki.paa.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "bad PAI"),
                    x509.NameAttribute(oids.VENDOR_ID, "FFF1"),
                ]
            )
        )
        .issuer_name(pki.paa.subject)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(NB)
        .not_valid_after(profiles.NO_EXPIRY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(paa_ski.digest, None, None), critical=False)
        .sign(pki.paa_key, hashes.SHA256())
    )
    return cert, key


def _factory_with_bad_pai(pki: Pki) -> object:
    return profiles.DacFactory(*_bad_ku_pai(pki))


def _rcac_pathlen_zero(pki: Pki) -> object:
    key = _key()
    root = profiles.build_rcac(key, rcac_id=5, not_before=NB, not_after=None, serial=3, path_len=0)
    return _icac(pki, issuer_cert=root, issuer_key=key, fabric_id=None)


REFUSALS: Final[list[tuple[str, Callable[[Pki], object], Rule]]] = [
    # keys
    (
        "fail/dac-p384-key",
        lambda p: _dac(p, public_key=ec.generate_private_key(ec.SECP384R1()).public_key()),
        Rule.CURVE,
    ),
    (
        "fail/noc-secp256k1-key",
        lambda p: _noc(p, public_key=ec.generate_private_key(ec.SECP256K1()).public_key()),
        Rule.CURVE,
    ),
    (
        "fail/pai-issuer-key-p384",
        lambda p: _pai(p, issuer_key=ec.generate_private_key(ec.SECP384R1())),
        Rule.CURVE,
    ),
    (
        "fail/paa-p384",
        lambda p: profiles.build_paa(
            ec.generate_private_key(ec.SECP384R1()),
            name="p",
            vid=None,
            not_before=NB,
            not_after=None,
            serial=1,
        ),
        Rule.CURVE,
    ),
    ("fail/issuer-key-mismatch", lambda p: _dac(p, pai_key=p.paa_key), Rule.CHAIN_ISSUER_KEY),
    # VID / PID
    ("fail/pai-missing-vid", lambda p: _pai(p, vid=None), Rule.PAI_VID_REQUIRED),
    ("fail/dac-missing-vid", lambda p: _dac(p, vid=None), Rule.DAC_VID_REQUIRED),
    ("fail/dac-missing-pid", lambda p: _dac(p, pid=None), Rule.DAC_PID_REQUIRED),
    ("fail/dac-pid-differs-from-pai", lambda p: _dac(p, pid=0x8001), Rule.CHAIN_PID_MISMATCH),
    ("fail/dac-vid-differs-from-pai", lambda p: _dac(p, vid=0xFFF2), Rule.CHAIN_VID_MISMATCH),
    ("fail/pai-vid-differs-from-paa", lambda p: _pai(p, vid=0xFFF2), Rule.CHAIN_VID_MISMATCH),
    ("fail/vid-zero", lambda p: _pai(p, vid=0), Rule.VID_RANGE),
    (
        "fail/vid-fff5",
        lambda p: profiles.build_paa(
            p.paa_key, name="p", vid=0xFFF5, not_before=NB, not_after=None, serial=1
        ),
        Rule.VID_RANGE,
    ),
    ("fail/pid-zero", lambda p: _pai(p, pid=0), Rule.PID_RANGE),
    ("fail/pid-17-bits", lambda p: _pai(p, pid=0x1_0000), Rule.PID_RANGE),
    ("fail/cn-with-mvid", lambda p: _dac(p, name="DAC Mvid:FFF1"), Rule.VIDPID_FALLBACK),
    ("fail/cn-empty", lambda p: _dac(p, name=""), Rule.NAME),
    ("fail/cn-65-chars", lambda p: _dac(p, name="x" * 65), Rule.NAME),
    ("fail/cn-65-utf8-bytes", lambda p: _dac(p, name="é" * 33), Rule.NAME),
    # key usage / chain shape
    ("fail/pai-wrong-key-usage", _factory_with_bad_pai, Rule.PAI_KEY_USAGE),
    (
        "fail/dac-directly-under-paa",
        lambda p: _dac(p, pai_cert=p.paa, pai_key=p.paa_key),
        Rule.CHAIN_ISSUER_KIND,
    ),
    (
        "fail/pai-under-pai-too-deep",
        lambda p: _pai(p, issuer_cert=p.pai, issuer_key=p.pai_key),
        Rule.CHAIN_DEPTH,
    ),
    (
        "fail/icac-under-icac-too-deep",
        lambda p: _icac(p, issuer_cert=p.icac, issuer_key=p.icac_key),
        Rule.CHAIN_DEPTH,
    ),
    (
        "fail/noc-under-noc",
        lambda p: _noc(p, issuer_cert=_noc(p), issuer_key=p.icac_key),
        Rule.CHAIN_ISSUER_KIND,
    ),
    (
        "fail/noc-under-paa",
        lambda p: _noc(p, issuer_cert=p.paa, issuer_key=p.paa_key),
        Rule.CHAIN_ISSUER_KIND,
    ),
    ("fail/icac-under-rcac-pathlen-0", _rcac_pathlen_zero, Rule.CHAIN_PATHLEN),
    (
        "fail/paa-pathlen-0",
        lambda p: profiles.build_paa(
            p.paa_key, name="p", vid=None, not_before=NB, not_after=None, serial=1, path_len=0
        ),
        Rule.PAA_PATHLEN,
    ),
    (
        "fail/rcac-pathlen-2",
        lambda p: profiles.build_rcac(
            p.rcac_key, rcac_id=1, not_before=NB, not_after=None, serial=1, path_len=2
        ),
        Rule.RCAC_PATHLEN,
    ),
    ("fail/icac-pathlen-1", lambda p: _icac(p, path_len=1), Rule.ICAC_PATHLEN),
    # operational identifiers
    (
        "fail/noc-4-cats",
        lambda p: _noc(p, cats=(0x1_0001, 0x2_0001, 0x3_0001, 0x4_0001)),
        Rule.NOC_CAT_COUNT,
    ),
    ("fail/noc-cat-version-0", lambda p: _noc(p, cats=(0xABCD_0000,)), Rule.NOC_CAT_VERSION),
    (
        "fail/noc-cat-same-identifier",
        lambda p: _noc(p, cats=(0xABCD_0001, 0xABCD_0002)),
        Rule.NOC_CAT_DUPLICATE,
    ),
    ("fail/noc-node-id-0", lambda p: _noc(p, node_id=0), Rule.NOC_NODE_ID),
    (
        "fail/noc-node-id-above-operational",
        lambda p: _noc(p, node_id=0xFFFF_FFF0_0000_0000),
        Rule.NOC_NODE_ID,
    ),
    ("fail/noc-fabric-0", lambda p: _noc(p, fabric_id=0), Rule.FABRIC_ID),
    (
        "fail/noc-fabric-differs",
        lambda p: _noc(p, fabric_id=FABRIC + 1),
        Rule.CHAIN_FABRIC_MISMATCH,
    ),
    ("fail/icac-fabric-differs", lambda p: _icac(p, fabric_id=1), Rule.CHAIN_FABRIC_MISMATCH),
    (
        "fail/rcac-id-65-bits",
        lambda p: profiles.build_rcac(
            p.rcac_key, rcac_id=1 << 64, not_before=NB, not_after=None, serial=1
        ),
        Rule.RCAC_SUBJECT,
    ),
    # validity and serial
    (
        "fail/dac-before-pai",
        lambda p: _dac(p, not_before=datetime(2023, 1, 1, tzinfo=UTC)),
        Rule.CHAIN_VALIDITY,
    ),
    (
        "fail/noc-before-icac",
        lambda p: _noc(p, not_before=datetime(2023, 1, 1, tzinfo=UTC)),
        Rule.CHAIN_VALIDITY,
    ),
    ("fail/naive-datetime", lambda p: _dac(p, not_before=NB.replace(tzinfo=None)), Rule.VALIDITY),
    (
        "fail/inverted-validity",
        lambda p: _dac(p, not_after=datetime(2024, 1, 1, tzinfo=UTC)),
        Rule.VALIDITY,
    ),
    (
        "fail/rcac-at-matter-epoch",
        lambda p: profiles.build_rcac(
            p.rcac_key,
            rcac_id=1,
            not_before=datetime(2000, 1, 1, tzinfo=UTC),
            not_after=None,
            serial=1,
        ),
        Rule.VALIDITY,
    ),
    (
        "fail/rcac-after-2136",
        lambda p: profiles.build_rcac(
            p.rcac_key,
            rcac_id=1,
            not_before=NB,
            not_after=datetime(2140, 1, 1, tzinfo=UTC),
            serial=1,
        ),
        Rule.VALIDITY,
    ),
    ("fail/serial-0", lambda p: _dac(p, serial=0), Rule.SERIAL),
    ("fail/serial-160-bits", lambda p: _dac(p, serial=1 << 159), Rule.SERIAL),
]


@pytest.mark.parametrize(
    ("build", "rule"), [pytest.param(b, r, id=case) for case, b, r in REFUSALS]
)
def test_builders_refuse_with_a_named_rule(
    pki: Pki, build: Callable[[Pki], object], rule: Rule
) -> None:
    with pytest.raises(MatterError) as info:
        build(pki)
    assert info.value.rule is rule, info.value
    assert str(info.value).startswith(f"{rule}: ")
