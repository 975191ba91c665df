"""The parsed certificate view: DER refusals are Rule.DER, malformed times Rule.VALIDITY."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.ca.matter import certificate
from server.ca.matter.errors import MatterError, Rule

_NOT_BEFORE = b"\x17\x0d260101000000Z"


def _der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_parse_reads_the_fields() -> None:
    der = _der()
    cert = certificate.parse_certificate(der)
    assert (cert.version, cert.serial, cert.der) == (2, b"\x01", der)
    assert cert.not_before == certificate.Time(0x17, datetime(2026, 1, 1, tzinfo=UTC))
    assert [ext.critical for ext in cert.extensions] == [True]


@pytest.mark.parametrize(
    ("damage", "rule"),
    [
        pytest.param(lambda d: d + b"\x00", Rule.DER, id="fail/trailing-byte"),
        pytest.param(lambda d: d[:-1], Rule.DER, id="fail/truncated"),
        pytest.param(
            lambda d: d.replace(_NOT_BEFORE, b"\x17\x0d261301000000Z"),
            Rule.VALIDITY,
            id="fail/month-13",
        ),
        pytest.param(
            lambda d: d.replace(_NOT_BEFORE, b"\x17\x0d2601010000+0Z"),
            Rule.VALIDITY,
            id="fail/not-rfc5280-form",
        ),
    ],
)
def test_refusals_name_the_rule(damage: Callable[[bytes], bytes], rule: Rule) -> None:
    der = _der()
    assert _NOT_BEFORE in der
    with pytest.raises(MatterError) as err:
        certificate.parse_certificate(damage(der))
    assert err.value.rule is rule
