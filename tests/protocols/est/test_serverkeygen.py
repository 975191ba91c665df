"""serverkeygen (RFC 7030 §4.4): multipart/mixed with a real PKCS#8 key following the CSR."""

from __future__ import annotations

import base64
import email.parser
import email.policy

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.protocols.est.conftest import PKCS10, PREFIX, EstEnv, b64, basic, csr_der
from tests.support import openssl


def _parts(content_type: str, body: bytes) -> dict[str, bytes]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    assert msg.is_multipart()
    out = {}
    for part in msg.iter_parts():
        payload = part.get_payload(decode=False)
        assert isinstance(payload, str)
        out[part.get_content_type()] = base64.b64decode("".join(payload.split()), validate=True)
    return out


@pytest.mark.parametrize(
    ("make_key", "check"),
    [
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP256R1()),
            lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1",
            id="ok/ec-p256",
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP384R1()),
            lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp384r1",
            id="ok/ec-p384",
        ),
        pytest.param(
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048,
            id="ok/rsa-2048",
        ),
    ],
)
async def test_serverkeygen_key_follows_csr(
    est_env: EstEnv, make_key: object, check: object
) -> None:
    der, csr_key = csr_der(key=make_key())  # type: ignore[operator]
    resp = await est_env.client.post(
        f"{PREFIX}/serverkeygen", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200, await resp.text()
    ctype = resp.headers["Content-Type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    parts = _parts(ctype, await resp.read())
    assert set(parts) == {"application/pkcs8", "application/pkcs7-mime"}
    key = serialization.load_der_private_key(parts["application/pkcs8"], password=None)
    assert check(key)  # type: ignore[operator]
    (cert,) = pkcs7.load_der_pkcs7_certificates(parts["application/pkcs7-mime"])
    assert cert.public_key() == key.public_key()
    assert cert.public_key() != csr_key.public_key()
    # openssl reads the key part as a PKCS#8 PrivateKeyInfo (not PKCS#1).
    out = openssl("pkey", "-inform", "DER", "-noout", "-text", stdin=parts["application/pkcs8"])
    assert out.returncode == 0, out.stderr
    assert await est_env.cert_count() == 3


async def test_serverkeygen_needs_auth_and_valid_csr(est_env: EstEnv) -> None:
    der, _ = csr_der()
    resp = await est_env.client.post(f"{PREFIX}/serverkeygen", data=b64(der), headers=PKCS10)
    assert resp.status == 401
    resp = await est_env.client.post(
        f"{PREFIX}/serverkeygen", data=b64(der[:-1] + b"\x00"), headers={**PKCS10, **basic()}
    )
    assert resp.status == 400
    assert await est_env.cert_count() == 2
