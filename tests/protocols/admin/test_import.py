"""Importing a CA through the admin API: CSR out, externally signed certificate in."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca.admin import api as admin_api
from server.ca.types import CAStatus
from tests.protocols.admin.conftest import OP, AdminEnv, csr_pem
from tests.support import external_ca_chain, openssl_verify

Role = admin_api.Role


async def test_import_then_activate_then_issue(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, body, _ = await env.call(
        "POST",
        "/cas/imports",
        token=owner,
        json={"name": "corp-issuing", "subject": "CN=Corp Issuing,O=Corp", "key_type": "ec-p384"},
    )
    assert status == 201, body
    assert body["state"] == "pending-import"
    assert body["external"] is True
    assert body["parent"] is None
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=Corp Issuing,O=Corp"
    assert csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The CSR is shown on the CA until it is active; there is no certificate yet.
    status, shown, _ = await env.call("GET", "/cas/corp-issuing", token=owner)
    assert shown["csr"] == body["csr"]
    status, _, _ = await env.call("GET", "/cas/corp-issuing/certificate", token=owner)
    assert status == 409
    signed = external_ca_chain(csr.public_bytes(serialization.Encoding.DER), now=env.clock.now())
    ca_only = signed.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    status, problem, _ = await env.call(
        "POST", "/cas/corp-issuing/activate", token=owner, json={"certificate": ca_only.decode()}
    )
    assert status == 400, problem
    assert "chain up to the root is missing" in problem["detail"]
    assert (await env.engine.get_ca("corp-issuing")).status is CAStatus.PENDING
    status, body, _ = await env.call(
        "POST", "/cas/corp-issuing/activate", token=owner, json={"certificate": signed.decode()}
    )
    assert status == 200, body
    assert (body["state"], body["tier"], body["csr"]) == ("active", 2, None)
    assert body["subject"] == "CN=Corp Issuing,O=Corp"
    # Once active it is a CA like any other: a second activation conflicts; it issues.
    status, problem, _ = await env.call(
        "POST", "/cas/corp-issuing/activate", token=owner, json={"certificate": signed.decode()}
    )
    assert status == 409, problem
    issuer = await env.token("issuer", Role.ISSUER, None)
    status, chain_pem, _ = await env.call(
        "POST", "/cas/corp-issuing/certificates", token=issuer, json={"csr": csr_pem()}
    )
    assert status == 201, chain_pem
    leaf, *chain = x509.load_pem_x509_certificates(chain_pem.encode())
    root = x509.load_pem_x509_certificates(signed)[-1]
    result = openssl_verify(leaf, [*chain, root])
    assert result.returncode == 0, result.stderr


async def test_activation_refuses_a_certificate_for_another_key(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, body, _ = await env.call("POST", "/cas/imports", token=owner, json={"name": "imp"})
    assert status == 201, body
    other = x509.load_pem_x509_csr(csr_pem().encode()).public_bytes(serialization.Encoding.DER)
    wrong = external_ca_chain(other, now=env.clock.now()).decode()
    status, problem, ctype = await env.call(
        "POST", "/cas/imp/activate", token=owner, json={"certificate": wrong}
    )
    assert status == 400, problem
    assert ctype == "application/problem+json"
    assert "not for this CA's key" in problem["detail"]
    assert (await env.engine.get_ca("imp")).status is CAStatus.PENDING


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({}, "name is required", id="fail/no-name"),
        pytest.param({"name": "x", "subject": "not a DN"}, "", id="fail/subject"),
        pytest.param({"name": "x", "subject": "CN=" + "a" * 2000}, "at most", id="fail/long"),
        pytest.param({"name": "x", "days": 30}, "unknown field", id="fail/days"),
        pytest.param({"name": "x", "key_type": "dsa"}, "key_type", id="fail/key-type"),
        pytest.param({"name": "root"}, "", id="fail/taken"),
        pytest.param({"name": "x", "key_backend": "carried"}, "key_backend", id="fail/carried"),
        pytest.param({"name": "x", "key_backend": "pkcs11"}, "", id="fail/not-configured"),
    ],
)
async def test_bad_import_requests(env: AdminEnv, body: dict[str, object], detail: str) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, problem, ctype = await env.call("POST", "/cas/imports", token=owner, json=body)
    assert status == (409 if body.get("name") == "root" else 400), problem
    assert ctype == "application/problem+json"
    assert detail in problem["detail"]
    assert await env.engine.find_ca("x") is None


@pytest.mark.parametrize(
    ("ca", "body", "status"),
    [
        pytest.param("teamA", {"certificate": "-----BEGIN CERTIFICATE-----"}, 409, id="active"),
        pytest.param("nosuch", {"certificate": "-----BEGIN CERTIFICATE-----"}, 404, id="unknown"),
        pytest.param("imp", {"certificate": "-----BEGIN CERTIFICATE-----\nAA"}, 400, id="garbage"),
        pytest.param("imp", {"certificate": "MIIB"}, 400, id="not-pem"),
        pytest.param("imp", {}, 400, id="missing"),
        pytest.param("imp", {"certificate": "x", "chain": "y"}, 400, id="unknown-field"),
    ],
)
async def test_bad_activations(
    env: AdminEnv, ca: str, body: dict[str, object], status: int
) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    await env.engine.create_import_request("imp", actor=OP)
    got, problem, ctype = await env.call("POST", f"/cas/{ca}/activate", token=owner, json=body)
    assert got == status, problem
    assert ctype == "application/problem+json"
    assert (await env.engine.get_ca("imp")).status is CAStatus.PENDING
