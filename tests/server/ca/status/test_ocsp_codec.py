"""OCSP DER codec: strict request parsing and response encoding read back by cryptography."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from server.ca import keys
from server.ca.status import ocsp_codec


def _w(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _seq(*parts: bytes) -> bytes:
    return _w(0x30, b"".join(parts))


def request_der(cert_ids: list[bytes], *, nonce: bytes | None = None) -> bytes:
    """Return an OCSPRequest with these CertIDs (and a nonce extnValue)."""
    tbs = [_seq(*(_seq(cid) for cid in cert_ids))]
    if nonce is not None:
        oid = bytes.fromhex("06092b0601050507300102".replace(" ", ""))
        tbs.append(_w(0xA2, _seq(_seq(oid, _w(0x04, nonce)))))
    return _seq(_seq(*tbs))


CID = ocsp_codec.cert_id("sha1", name_der=b"\x30\x00", key_bits=b"key", serial=0x1234)


def test_parse_single_and_multi() -> None:
    cid2 = ocsp_codec.cert_id("sha256", name_der=b"\x30\x00", key_bits=b"key", serial=7)
    req = ocsp_codec.parse_request(request_der([CID, cid2]))
    assert [i.serial for i in req.items] == [0x1234, 7]
    assert [i.hash_name for i in req.items] == ["sha1", "sha256"]
    assert req.items[0].raw == CID
    assert req.items[0].name_hash == hashlib.sha1(b"\x30\x00", usedforsecurity=False).digest()
    assert req.nonce is None


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_parse_matches_cryptography_builder() -> None:
    cert = _self_signed(ec.generate_private_key(ec.SECP256R1()))
    built = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, cert, hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
        .add_extension(x509.OCSPNonce(b"n" * 16), critical=False)
        .build()
    )
    req = ocsp_codec.parse_request(built.public_bytes(serialization.Encoding.DER))
    assert req.items[0].serial == cert.serial_number
    assert req.items[0].key_hash == built.issuer_key_hash
    assert req.nonce == _w(0x04, b"n" * 16)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(b"garbage!", id="fail/garbage"),
        pytest.param(b"\x30\x80\x00\x00", id="fail/indefinite-length"),
        pytest.param(_seq(_seq()), id="fail/no-request-list"),
        pytest.param(_seq(_seq(_seq())), id="fail/empty-request-list"),
        pytest.param(request_der([CID]) + b"\x00", id="fail/trailing-bytes"),
        pytest.param(request_der([CID])[:-3], id="fail/truncated"),
        pytest.param(
            request_der([CID.replace(b"\x02\x02\x12\x34", b"\x02\x02\x92\x34")]),
            id="fail/negative-serial",
        ),
        pytest.param(request_der([CID], nonce=_w(0x04, b"")), id="fail/empty-nonce"),
        pytest.param(request_der([CID], nonce=_w(0x04, b"x" * 33)), id="fail/long-nonce"),
        pytest.param(request_der([CID] * 33), id="fail/too-many-certids"),
        pytest.param(
            b"\x30\x84\x00\x00\x00\x05" + request_der([CID])[2:7], id="fail/non-minimal-length"
        ),
    ],
)
def test_parse_rejects(data: bytes) -> None:
    with pytest.raises(ocsp_codec.MalformedError):
        ocsp_codec.parse_request(data)


def test_encode_multi_response_with_nonce() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bits = ocsp_codec.public_key_bits(ocsp_codec.spki_der(key))
    signer = ocsp_codec.SignerKey(
        signer=keys.KeySigner(key), key_hash=hashlib.sha1(bits, usedforsecurity=False).digest()
    )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    cid2 = ocsp_codec.cert_id("sha1", name_der=b"\x30\x00", key_bits=b"key", serial=99)
    der = ocsp_codec.encode_response(
        signer,
        [
            ocsp_codec.SingleStatus(CID, "revoked", now, 1),
            ocsp_codec.SingleStatus(cid2, "good"),
            ocsp_codec.SingleStatus(cid2, "unknown"),
        ],
        this_update=now,
        next_update=now + timedelta(days=4),
        nonce=_w(0x04, b"abc"),
    )
    resp = ocsp.load_der_ocsp_response(der)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    statuses = [(r.serial_number, r.certificate_status) for r in resp.responses]
    assert statuses == [
        (0x1234, ocsp.OCSPCertStatus.REVOKED),
        (99, ocsp.OCSPCertStatus.GOOD),
        (99, ocsp.OCSPCertStatus.UNKNOWN),
    ]
    assert resp.responder_key_hash == signer.key_hash
    nonce = resp.extensions.get_extension_for_class(x509.OCSPNonce)
    assert nonce.value.nonce == b"abc"
    key.public_key().verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(1, ocsp.OCSPResponseStatus.MALFORMED_REQUEST, id="ok/malformed"),
        pytest.param(6, ocsp.OCSPResponseStatus.UNAUTHORIZED, id="ok/unauthorized"),
    ],
)
def test_unsuccessful(status: int, expected: ocsp.OCSPResponseStatus) -> None:
    assert ocsp.load_der_ocsp_response(ocsp_codec.unsuccessful(status)).response_status is expected
