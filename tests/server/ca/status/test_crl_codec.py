"""crl_codec: privca's own CRL encoding equals cryptography's builder byte for byte."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from server.ca import issuance, keys, revocation
from server.ca.status import crl_codec
from server.ca.types import RevocationReason
from tests.support import openssl

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def _issuer(key: CertificateIssuerPrivateKeyTypes) -> issuance.Issuer:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl codec test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, keys.signature_hash(key))
    )
    return issuance.Issuer.create(cert, key, urls=None)


def _entries(count: int) -> list[tuple[int, datetime | None, RevocationReason | None]]:
    rng = random.Random(7)  # noqa: S311 - deterministic test data
    reasons: list[RevocationReason | None] = [None, *RevocationReason]
    reasons.remove(RevocationReason.REMOVE_FROM_CRL)
    edge_serials = [1, 127, 128, 255, 256, 0x7FFF, 0x8000, (1 << 159) - 1, 1 << 126]
    out: list[tuple[int, datetime | None, RevocationReason | None]] = []
    for i in range(count):
        serial = edge_serials[i] if i < len(edge_serials) else rng.getrandbits(127) | 1
        # Through 2049 UTCTime, from 2050 GeneralizedTime; None takes the default time.
        at = None if i % 17 == 0 else NOW + timedelta(days=rng.choice([-400, 0, 9000]), seconds=i)
        out.append((serial, at, reasons[i % len(reasons)]))
    return out


def _epochs(
    entries: list[tuple[int, datetime | None, RevocationReason | None]],
) -> list[tuple[int, int | None, RevocationReason | None]]:
    return [(s, int(at.timestamp()) if at else None, r) for s, at, r in entries]


def _ours(
    issuer: issuance.Issuer,
    entries: list[tuple[int, datetime | None, RevocationReason | None]],
    distribution_point: str | None = None,
) -> bytes:
    return crl_codec.sign(
        issuer,
        crl_codec.encode_entries(_epochs(entries), default_time=NOW),
        number=42,
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
        distribution_point=distribution_point,
    )


def _builder_crl(
    issuer: issuance.Issuer,
    entries: list[tuple[int, datetime | None, RevocationReason | None]],
    distribution_point: str | None,
) -> x509.CertificateRevocationList:
    revoked = []
    for serial, at, reason in entries:
        builder = x509.RevokedCertificateBuilder(
            serial_number=serial, revocation_date=at or NOW, extensions=[]
        )
        flag = revocation.reason_flag(reason)
        if flag is not None:
            builder = builder.add_extension(x509.CRLReason(flag), critical=False)
        revoked.append(builder.build())
    return revocation.sign_crl(
        issuer,
        revoked,
        number=42,
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
        distribution_point=distribution_point,
    )


KEYS: dict[str, Callable[[], CertificateIssuerPrivateKeyTypes]] = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ml-dsa-44": mldsa.MLDSA44PrivateKey.generate,
}


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("distribution_point", [None, "http://127.0.0.1:8080/crl/issuing.crl"])
def test_tbs_equals_the_builder_and_signature_verifies(
    kind: str, distribution_point: str | None
) -> None:
    issuer = _issuer(KEYS[kind]())
    entries = _entries(60)
    ours = x509.load_der_x509_crl(_ours(issuer, entries, distribution_point))
    theirs = _builder_crl(issuer, entries, distribution_point)
    assert ours.tbs_certlist_bytes == theirs.tbs_certlist_bytes
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid
    assert ours.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
    assert len(ours) == 60
    got = {r.serial_number: r for r in ours}
    assert got[(1 << 159) - 1].revocation_date_utc == NOW + timedelta(days=9000, seconds=7)


def test_empty_crl_is_the_frame_itself() -> None:
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()))
    crl = x509.load_der_x509_crl(_ours(issuer, []))
    assert len(crl) == 0
    assert crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]


def test_openssl_reads_and_verifies_a_large_crl(tmp_path: Path) -> None:
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()))
    entries: list[tuple[int, datetime | None, RevocationReason | None]] = [
        (s, NOW, RevocationReason.KEY_COMPROMISE) for s in range(1000, 6000)
    ]
    (tmp_path / "crl.der").write_bytes(_ours(issuer, entries))
    (tmp_path / "ca.pem").write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    out = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "crl.der"),
        "-CAfile",
        str(tmp_path / "ca.pem"),
        "-noout",
        "-text",
    )
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert "verify OK" in out.stderr.decode() + text
    assert "Key Compromise" in text
    assert text.count("Serial Number:") == 5000
