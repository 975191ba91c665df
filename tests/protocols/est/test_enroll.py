"""simpleenroll with HTTP Basic (RFC 7030 §4.2.1, RFC 8951 bodies) and every refusal."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.ca.est import api as est_api
from tests.protocols.est.conftest import (
    OP,
    PKCS10,
    PREFIX,
    EstEnv,
    b64,
    basic,
    certs_from_body,
    csr_der,
)
from tests.support import openssl_verify


async def test_enroll_with_basic_issues_device_cert(est_env: EstEnv) -> None:
    der, key = csr_der("fire-sensor-123")
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    (cert,) = certs_from_body(await resp.read())
    assert cert.subject.rfc4514_string() == "2.5.4.5=FS123,CN=fire-sensor-123"
    assert cert.public_key() == key.public_key()
    result = openssl_verify(cert, est_env.chain)
    assert result.returncode == 0, result.stderr
    assert await est_env.cert_count() == 1 + 2  # two CA records plus the leaf


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda d: b64(d, width=64).replace(b"\n", b"\r\n"), id="ok/crlf-lines"),
        pytest.param(lambda d: base64.b64encode(d), id="ok/one-line"),
        pytest.param(
            lambda d: b"  " + b64(d, width=10).replace(b"\n", b" \t\n") + b"\n\n",
            id="ok/ragged-whitespace",
        ),
        pytest.param(
            lambda d: (
                b"-----BEGIN CERTIFICATE REQUEST-----\n"
                + b64(d)
                + b"-----END CERTIFICATE REQUEST-----\n"
            ),
            id="ok/pem-armour",
        ),
    ],
)
async def test_enroll_tolerates_base64_layout(est_env: EstEnv, body: Any) -> None:
    der, _ = csr_der()
    headers = {**PKCS10, **basic(), "Content-Transfer-Encoding": "base64"}
    resp = await est_env.client.post(f"{PREFIX}/simpleenroll", data=body(der), headers=headers)
    assert resp.status == 200, await resp.text()


def _bad_signature(der: bytes) -> bytes:
    # Flip a bit in the last byte: the signature value no longer verifies.
    return der[:-1] + bytes([der[-1] ^ 0x01])


async def _rsa1024() -> bytes:
    # A deliberately weak key: the policy must refuse it.
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return csr_der(key=key)[0]


@pytest.mark.parametrize(
    ("case", "expected", "reason"),
    [
        pytest.param("no-auth", 401, "authentication required", id="fail/no-auth"),
        pytest.param("wrong-password", 401, "wrong username or password", id="fail/wrong-password"),
        pytest.param("unknown-user", 401, "wrong username or password", id="fail/unknown-user"),
        pytest.param("bearer", 401, "only HTTP Basic", id="fail/other-scheme"),
        pytest.param("bad-basic", 401, "malformed Basic", id="fail/malformed-basic"),
        pytest.param("content-type", 415, "application/pkcs10", id="fail/wrong-content-type"),
        pytest.param("bad-base64", 400, "not valid base64", id="fail/bad-base64"),
        pytest.param("empty", 400, "empty", id="fail/empty-body"),
        pytest.param("truncated", 400, "not a valid PKCS#10", id="fail/truncated-der"),
        pytest.param("not-der", 400, "not a DER PKCS#10", id="fail/not-der"),
        pytest.param("bad-signature", 400, "signature does not verify", id="fail/bad-signature"),
        pytest.param("weak-key", 400, "RSA key of 1024 bits", id="fail/rsa-1024"),
        pytest.param("oversize", 413, "", id="fail/oversize-body"),
        pytest.param("unknown-label", 404, "unknown EST label", id="fail/unknown-label"),
    ],
)
async def test_enroll_refusals_store_nothing(
    est_env: EstEnv, case: str, expected: int, reason: str
) -> None:
    der, _ = csr_der()
    url = f"{PREFIX}/simpleenroll"
    headers: dict[str, str] = {**PKCS10, **basic()}
    body = b64(der)
    if case == "no-auth":
        headers = dict(PKCS10)
    elif case == "wrong-password":
        headers = {**PKCS10, **basic(password="wrong-password")}
    elif case == "unknown-user":
        headers = {**PKCS10, **basic(user="nobody")}
    elif case == "bearer":
        headers = {**PKCS10, "Authorization": "Bearer abc"}
    elif case == "bad-basic":
        headers = {**PKCS10, "Authorization": "Basic !!!notbase64"}
    elif case == "content-type":
        headers = {**basic(), "Content-Type": "application/octet-stream"}
    elif case == "bad-base64":
        body = b"this is *not* base64 at all"
    elif case == "empty":
        body = b"\r\n"
    elif case == "truncated":
        body = b64(der[: len(der) // 2])
    elif case == "not-der":
        body = b64(b"hello world, no ASN.1 here")
    elif case == "bad-signature":
        body = b64(_bad_signature(der))
    elif case == "weak-key":
        body = b64(await _rsa1024())
    elif case == "oversize":
        body = b"A" * 20_000
    elif case == "unknown-label":
        url = f"{PREFIX}/ghost/simpleenroll"
    before = await est_env.cert_count()
    resp = await est_env.client.post(url, data=body, headers=headers)
    assert resp.status == expected, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert reason in await resp.text()
    if expected == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert await est_env.cert_count() == before


async def test_label_policy_refuses_disallowed_key_and_names(est_env: EstEnv) -> None:
    await est_env.service.add_label(
        est_api.EstLabel(name="servers", profile="tls-server", dns_suffixes=("internal",)),
        actor=OP,
    )
    await est_env.service.add_user("servers", "dev1", "correct-horse-battery", actor=OP)
    before = await est_env.cert_count()
    # tls-server requires a SAN: a bare device name is refused with 400.
    der, _ = csr_der("fire-sensor-123")
    resp = await est_env.client.post(
        f"{PREFIX}/servers/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 400
    assert "subjectAltName" in await resp.text()
    # An email SAN is outside tls-server's allowed name types.
    der, _ = csr_der("x", sans=(x509.RFC822Name("a@example.com"),))
    resp = await est_env.client.post(
        f"{PREFIX}/servers/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 400
    assert await est_env.cert_count() == before
    der, _ = csr_der("web.internal", sans=(x509.DNSName("web.internal"),))
    resp = await est_env.client.post(
        f"{PREFIX}/servers/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200


async def test_user_of_one_label_cannot_use_another(est_env: EstEnv) -> None:
    await est_env.service.add_label(est_api.EstLabel(name="other"), actor=OP)
    der, _ = csr_der()
    resp = await est_env.client.post(
        f"{PREFIX}/other/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 401


async def test_cert_only_label_refuses_passwords(est_env: EstEnv) -> None:
    await est_env.service.add_label(
        est_api.EstLabel(name="certonly", auth_modes=frozenset({est_api.AuthMode.CERT})),
        actor=OP,
    )
    der, _ = csr_der()
    resp = await est_env.client.post(
        f"{PREFIX}/certonly/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 401
    assert "client certificate" in await resp.text()


async def test_short_lived_label(est_env: EstEnv) -> None:
    await est_env.service.add_label(
        est_api.EstLabel(name="short", profile="short-lived", dns_suffixes=("internal",)), actor=OP
    )
    await est_env.service.add_user("short", "dev1", "correct-horse-battery", actor=OP)
    der, _ = csr_der("node1.internal", sans=(x509.DNSName("node1.internal"),))
    resp = await est_env.client.post(
        f"{PREFIX}/short/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
    )
    assert resp.status == 200
    (cert,) = certs_from_body(await resp.read())
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life.total_seconds() <= 7 * 86400


async def test_ec_p384_and_rsa_csr_enroll(est_env: EstEnv) -> None:
    for key in (
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ):
        der, _ = csr_der(key=key)
        resp = await est_env.client.post(
            f"{PREFIX}/simpleenroll", data=b64(der), headers={**PKCS10, **basic()}
        )
        assert resp.status == 200
        (cert,) = certs_from_body(await resp.read())
        assert cert.public_key() == key.public_key()


async def test_random_bodies_never_500_and_store_nothing(est_env: EstEnv) -> None:
    rng = random.Random(7030)  # noqa: S311 - reproducible junk, not secrets
    der, _ = csr_der()
    samples = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600))) for _ in range(20)]
    # Valid base64 of damaged DER: flipped bytes anywhere in a real CSR.
    for _ in range(20):
        damaged = bytearray(der)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        samples.append(b64(bytes(damaged)))
    before = await est_env.cert_count()
    for op in ("simpleenroll", "serverkeygen", "simplereenroll"):
        for body in samples:
            resp = await est_env.client.post(
                f"{PREFIX}/{op}", data=body, headers={**PKCS10, **basic()}
            )
            # simplereenroll needs the current certificate first (RFC 7030 §4.2.2): 403;
            # the others parse the body and refuse it: 400.
            expected = 403 if op == "simplereenroll" else 400
            assert resp.status == expected, (op, body[:40], resp.status, await resp.text())
    assert await est_env.cert_count() == before


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_enroll_with_a_content_encoding_is_415(est_env: EstEnv, encoding: str) -> None:
    """Issue 13: a compressed (here: lying) body is refused, never 500 or aiohttp's 400."""
    der, _ = csr_der()
    resp = await est_env.client.post(
        f"{PREFIX}/simpleenroll",
        data=b64(der),
        headers={**PKCS10, **basic(), "Content-Encoding": encoding},
    )
    assert resp.status == 415, await resp.text()
    assert resp.headers["Accept-Encoding"] == "identity"
    assert await est_env.cert_count() == 2
