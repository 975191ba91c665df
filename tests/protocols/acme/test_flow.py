"""Complete ACME flows through the aiohttp app: order, challenge, finalize, download."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca.acme import api as acme_api
from tests.protocols.acme.conftest import AcmeEnv
from tests.protocols.acme.support import AcmeClient, b64u, csr_der
from tests.support import lint_errors, openssl_verify


async def authorize(
    env: AcmeEnv, client: AcmeClient, order: dict[str, Any], kind: str = "http-01"
) -> None:
    """Answer one challenge per authorization and wait for validation."""
    for url in order["authorizations"]:
        authz = (await client.get(url)).json()
        if authz["status"] == "valid":
            continue
        chall = next(c for c in authz["challenges"] if c["type"] == kind)
        key_auth = client.key_authorization(chall["token"])
        if kind == "http-01":
            env.network.http_answers[chall["token"]] = key_auth
        elif kind == "dns-01":
            name = "_acme-challenge." + authz["identifier"]["value"]
            digest = b64u(hashlib.sha256(key_auth.encode()).digest())
            env.network.txt_records.setdefault(name, []).append(digest)
        else:
            env.network.alpn_certs[authz["identifier"]["value"]] = alpn_cert(
                authz["identifier"]["value"], key_auth
            )
        reply = await client.post(chall["url"], {})
        assert reply.status == 200, reply.body
        # Validation runs in the background: the answer is the challenge just started.
        assert reply.json()["status"] == "processing"
        assert any('rel="up"' in link for link in reply.links)
    await env.registration.orders.wait_idle()


def alpn_cert(
    name: str,
    key_auth: str,
    *,
    critical: bool = True,
    digest: bytes | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    value = b"\x04\x20" + (digest or hashlib.sha256(key_auth.encode()).digest())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(acme_api.ACME_IDENTIFIER_OID, value), critical=critical
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def obtain(
    env: AcmeEnv, client: AcmeClient, *names: str, kind: str = "http-01", **order_extra: Any
) -> tuple[dict[str, Any], list[x509.Certificate]]:
    reply = await client.new_order(*names, **order_extra)
    assert reply.status == 201, reply.body
    order_url = reply.headers["Location"]
    order = reply.json()
    assert order["status"] == "pending"
    await authorize(env, client, order, kind)
    order = (await client.get(order_url)).json()
    assert order["status"] == "ready", order
    der, _ = csr_der(names)
    reply = await client.post(order["finalize"], {"csr": b64u(der)})
    assert reply.status == 200, reply.body
    order = reply.json()
    assert order["status"] == "valid"
    reply = await client.get(order["certificate"])
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/pem-certificate-chain"
    certs = x509.load_pem_x509_certificates(reply.body)
    return order, certs


async def test_http01_flow_issues_a_verifiable_lint_clean_certificate(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    _order, certs = await obtain(acme_env, acme, "web.internal", "api.internal")
    leaf = certs[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["api.internal", "web.internal"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    root = (await acme_env.engine.chain_of(await acme_env.engine.get_ca("issuing")))[-1]
    result = openssl_verify(leaf, [*certs[1:], root])
    assert result.returncode == 0, result.stderr
    assert lint_errors(leaf) == []
    # The validator asked for the token at the identifier, on the configured port.
    assert ("http", "web.internal", 80, "web.internal") in acme_env.network.requests


async def test_dns01_wildcard_flow(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    reply = await acme.new_order("*.apps.internal")
    authz = (await acme.get(reply.json()["authorizations"][0])).json()
    assert authz["wildcard"] is True
    assert authz["identifier"] == {"type": "dns", "value": "apps.internal"}
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]
    _, certs = await obtain(acme_env, acme, "*.apps.internal", kind="dns-01")
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["*.apps.internal"]


async def test_tls_alpn01_flow(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    _, certs = await obtain(acme_env, acme, "tls.internal", kind="tls-alpn-01")
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["tls.internal"]


async def test_ip_identifier_flow(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    reply = await acme.new_order("10.1.2.3")
    authz = (await acme.get(reply.json()["authorizations"][0])).json()
    assert {c["type"] for c in authz["challenges"]} == {"http-01", "tls-alpn-01"}
    _, certs = await obtain(acme_env, acme, "10.1.2.3")
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]


async def test_shortlived_profile_and_validity_window(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    directory = await acme.directory()
    assert set(directory["meta"]["profiles"]) == {"tls-server", "shortlived"}
    order, certs = await obtain(acme_env, acme, "short.internal", profile="shortlived")
    assert order["profile"] == "shortlived"
    leaf = certs[0]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=7)
    end = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    _, certs = await obtain(
        acme_env, acme, "window.internal", notAfter=end.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert certs[0].not_valid_after_utc == end


async def test_valid_authorizations_are_reused(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    first, _ = await obtain(acme_env, acme, "reuse.internal")
    reply = await acme.new_order("reuse.internal")
    assert reply.json()["status"] == "ready"
    assert reply.json()["authorizations"] == first["authorizations"]


async def test_alternate_chain_includes_the_root(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    order, certs = await obtain(acme_env, acme, "alt.internal")
    reply = await acme.get(order["certificate"])
    alternates = [link for link in reply.links if 'rel="alternate"' in link]
    assert len(alternates) == 1
    alt_url = alternates[0].split(">")[0].lstrip("<")
    alt = x509.load_pem_x509_certificates((await acme.get(alt_url)).body)
    assert len(alt) == len(certs) + 1
    assert alt[-1].issuer == alt[-1].subject


async def test_foreign_account_cannot_read_order_or_certificate(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    order, _ = await obtain(acme_env, acme, "mine.internal")
    other = acme_env.client()
    assert (await other.new_account()).status == 201
    for url in (order["certificate"], order["authorizations"][0]):
        reply = await other.get(url)
        assert reply.status == 403
        assert reply.problem_type == "unauthorized"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        pytest.param("wrong", "incorrectResponse", id="fail/wrong-key-authorization"),
        # A status code is no scan oracle: it reads like a refused connection.
        pytest.param(None, "connection", id="fail/404-token"),
        pytest.param("refused", "connection", id="fail/connection-refused"),
    ],
)
async def test_failed_http01_marks_authz_and_order_invalid(
    acme_env: AcmeEnv, acme: AcmeClient, answer: str | None, problem: str
) -> None:
    reply = await acme.new_order("bad.internal")
    order_url = reply.headers["Location"]
    authz = (await acme.get(reply.json()["authorizations"][0])).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    if answer == "refused":
        acme_env.network.fail_with = acme_api.NetworkError("connection", "refused")
    elif answer is not None:
        acme_env.network.http_answers[chall["token"]] = answer
    await acme.post(chall["url"], {})
    await acme_env.registration.orders.wait_idle()
    authz = (await acme.get(reply.json()["authorizations"][0])).json()
    assert authz["status"] == "invalid"
    failed = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert failed["status"] == "invalid"
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:" + problem
    if problem == "connection":
        # Refused and 404 read the same to the client (the reason is only logged).
        detail = "http-01: could not fetch the http-01 response from the target"
        assert failed["error"]["detail"] == detail
    order = (await acme.get(order_url)).json()
    assert order["status"] == "invalid"
    # A second POST to the challenge does not restart validation.
    again = await acme.post(chall["url"], {})
    assert again.json()["status"] == "invalid"


@pytest.mark.parametrize(
    ("critical", "digest", "why"),
    [
        pytest.param(False, None, "must be critical", id="fail/non-critical"),
        pytest.param(True, b"\x00" * 32, "wrong value", id="fail/wrong-digest"),
    ],
)
async def test_bad_tls_alpn_certificate_is_refused(
    acme_env: AcmeEnv, acme: AcmeClient, critical: bool, digest: bytes | None, why: str
) -> None:
    reply = await acme.new_order("alpn.internal")
    authz_url = reply.json()["authorizations"][0]
    authz = (await acme.get(authz_url)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "tls-alpn-01")
    acme_env.network.alpn_certs["alpn.internal"] = alpn_cert(
        "alpn.internal", acme.key_authorization(chall["token"]), critical=critical, digest=digest
    )
    await acme.post(chall["url"], {})
    await acme_env.registration.orders.wait_idle()
    challenges = (await acme.get(authz_url)).json()["challenges"]
    failed = next(c for c in challenges if c["type"] == "tls-alpn-01")
    assert failed["status"] == "invalid"
    assert why in failed["error"]["detail"]


async def test_finalize_before_ready_is_order_not_ready(
    acme_env: AcmeEnv, acme: AcmeClient
) -> None:
    reply = await acme.new_order("early.internal")
    der, _ = csr_der(["early.internal"])
    reply = await acme.post(reply.json()["finalize"], {"csr": b64u(der)})
    assert reply.status == 403
    assert reply.problem_type == "orderNotReady"
    assert await acme_env.engine.find_certificates(_leaf_query()) == []


@pytest.mark.parametrize(
    ("csr_names", "problem"),
    [
        pytest.param(["ready.internal", "extra.internal"], "badCSR", id="fail/extra-identifier"),
        pytest.param(["other.internal"], "badCSR", id="fail/different-identifier"),
    ],
)
async def test_finalize_with_wrong_csr_names_is_refused_and_order_stays_ready(
    acme_env: AcmeEnv, acme: AcmeClient, csr_names: list[str], problem: str
) -> None:
    reply = await acme.new_order("ready.internal")
    order_url = reply.headers["Location"]
    await authorize(acme_env, acme, reply.json())
    der, _ = csr_der(csr_names)
    bad = await acme.post(reply.json()["finalize"], {"csr": b64u(der)})
    assert bad.status == 400
    assert bad.problem_type == problem
    assert await acme_env.engine.find_certificates(_leaf_query()) == []
    assert (await acme.get(order_url)).json()["status"] == "ready"
    good, _ = csr_der(["ready.internal"])
    assert (await acme.post(reply.json()["finalize"], {"csr": b64u(good)})).status == 200


async def test_finalize_with_garbage_csr_is_bad_csr(acme_env: AcmeEnv, acme: AcmeClient) -> None:
    reply = await acme.new_order("garbage.internal")
    await authorize(acme_env, acme, reply.json())
    bad = await acme.post(reply.json()["finalize"], {"csr": b64u(b"\x30\x03\x02\x01\x00")})
    assert bad.status == 400
    assert bad.problem_type == "badCSR"


def _leaf_query() -> Any:
    from server.ca.types import CertQuery

    return CertQuery(text="internal")
