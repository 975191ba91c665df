"""CA creation and issuance options the CLI has, through the admin API.

``ca create-root``/``create-sub`` take a subject, name constraints (``--permit-dns``,
``--permit-ip``), a key backend and, for a sub-CA, an identifier policy
(``--allow-dns-suffix``, ``--allow-ip``) and ``--publish-revocation``; ``cert issue``
takes ``--hours``. Each field must take effect, and a bad value is a 400 problem.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from server.ca import custody, keys
from server.ca.admin import api as admin_api
from server.ca.signer import Signer
from server.ca.types import CAMode, KeyAlgorithm, KeyHandle
from server.store.database import Database
from tests.protocols.admin.conftest import AdminEnv, ClientFactory, build_env, csr_pem

Role = admin_api.Role


async def test_root_takes_subject_and_name_constraints(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, body, _ = await env.call(
        "POST",
        "/cas",
        token=owner,
        json={
            "name": "corp-root",
            "subject": "CN=Corp Root,O=Corp,C=DE",
            "permit_dns": ["corp.example"],
            "permit_ip": ["10.0.0.0/8"],
        },
    )
    assert status == 201, body
    assert body["subject"] == "CN=Corp Root,O=Corp,C=DE"
    cert = (await env.engine.get_ca("corp-root")).certificate
    assert cert.subject.rfc4514_string() == "CN=Corp Root,O=Corp,C=DE"
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [
        x509.DNSName("corp.example"),
        x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")),
    ]
    # Without them: the default subject and no NameConstraints extension.
    status, body, _ = await env.call("POST", "/cas", token=owner, json={"name": "plain-root"})
    assert status == 201, body
    plain = (await env.engine.get_ca("plain-root")).certificate
    assert plain.subject.rfc4514_string() == "CN=plain-root,O=privca"
    assert x509.NameConstraints not in {type(e.value) for e in plain.extensions}


async def test_subordinate_takes_identifier_policy_and_revocation_choice(env: AdminEnv) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, body, _ = await env.call(
        "POST",
        "/cas/root/subordinates",
        token=owner,
        json={
            "name": "svc",
            "allow_dns": ["svc.corp.example"],
            "allow_ip": ["10.1.0.0/16"],
            "permit_dns": ["corp.example"],
        },
    )
    assert status == 201, body
    svc = await env.engine.get_ca("svc")
    assert svc.allowed_dns_suffixes == ("svc.corp.example",)
    assert svc.allowed_ip_networks == ("10.1.0.0/16",)
    nc = svc.certificate.extensions.get_extension_for_class(x509.NameConstraints).value
    assert nc.permitted_subtrees == [x509.DNSName("corp.example")]
    # The policy holds at issuance: a name outside svc.corp.example is refused.
    issuer = await env.token("issuer", Role.ISSUER, None)
    status, body, _ = await env.call(
        "POST", "/cas/svc/certificates", token=issuer, json={"csr": csr_pem("web.svc.corp.example")}
    )
    assert status == 201, body
    status, body, _ = await env.call(
        "POST", "/cas/svc/certificates", token=issuer, json={"csr": csr_pem("db.other.example")}
    )
    assert status == 400, body
    assert body["type"] == "urn:privca:problem:rejectedIdentifier"
    # A short-lived CA publishes no revocation URLs unless asked to.
    for name, extra in (("sl-quiet", {}), ("sl-loud", {"publish_revocation": True})):
        status, body, _ = await env.call(
            "POST",
            "/cas/root/subordinates",
            token=owner,
            json={"name": name, "mode": str(CAMode.SHORT_LIVED), **extra},
        )
        assert status == 201, body
    assert (await env.engine.get_ca("sl-quiet")).publish_revocation is False
    assert (await env.engine.get_ca("sl-loud")).publish_revocation is True


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/cas", {"subject": "CN="}, id="fail/subject-empty-value"),
        pytest.param("/cas", {"subject": "no-equals"}, id="fail/subject-not-a-dn"),
        pytest.param("/cas", {"subject": ""}, id="fail/subject-empty"),
        pytest.param("/cas", {"subject": "CN=" + "x" * 2000}, id="fail/subject-too-long"),
        pytest.param("/cas", {"permit_dns": ["bad name!"]}, id="fail/permit-dns"),
        pytest.param("/cas", {"permit_dns": "corp.example"}, id="fail/permit-dns-not-list"),
        pytest.param("/cas", {"permit_ip": ["10.0.0.1/8"]}, id="fail/permit-ip-host-bits"),
        pytest.param("/cas", {"permit_ip": ["nope"]}, id="fail/permit-ip"),
        pytest.param("/cas", {"key_backend": "carried"}, id="fail/key-backend-carried"),
        pytest.param("/cas", {"key_backend": "pkcs11"}, id="fail/key-backend-not-configured"),
        pytest.param("/cas", {"allow_dns": ["corp.example"]}, id="fail/allow-dns-on-root"),
        pytest.param("/cas", {"publish_revocation": True}, id="fail/publish-on-root"),
        pytest.param(
            "/cas/root/subordinates", {"publish_revocation": "yes"}, id="fail/publish-not-bool"
        ),
        pytest.param("/cas/root/subordinates", {"allow_ip": ["10.0.0/33"]}, id="fail/allow-ip"),
        pytest.param(
            "/cas/root/subordinates", {"key_backend": "pkcs11"}, id="fail/sub-key-backend"
        ),
    ],
)
async def test_bad_ca_options_are_400_problems(
    env: AdminEnv, path: str, body: dict[str, Any]
) -> None:
    owner = await env.token("owner", Role.OWNER, None)
    status, problem, ctype = await env.call("POST", path, token=owner, json={"name": "x", **body})
    assert status == 400, problem
    assert ctype == "application/problem+json"
    assert problem["type"] == "urn:privca:problem:malformed"
    assert await env.engine.find_ca("x") is None


class _FakeToken:
    """A second key backend named pkcs11 (software keys underneath): what a token looks like."""

    name = "pkcs11"

    def __init__(self, inner: keys.Pkcs8KeyBackend) -> None:
        self._inner = inner

    def create(
        self, alg: KeyAlgorithm, *, label: str
    ) -> tuple[KeyHandle, CertificatePublicKeyTypes]:
        handle, public = self._inner.create(alg, label=label)
        return replace(handle, backend=self.name), public

    def load(self, handle: KeyHandle) -> Signer:
        return self._inner.load(handle)


async def test_key_backend_chooses_among_configured_backends(
    database: Database, aiohttp_client: ClientFactory, key_backend: keys.Pkcs8KeyBackend
) -> None:
    # As server.wiring builds them: software keys, carried keys, a token.
    backends = keys.KeyBackends(
        key_backend, custody.CarriedKeys(key_backend), _FakeToken(key_backend)
    )
    env = await build_env(database, aiohttp_client, backends)
    owner = await env.token("owner", Role.OWNER, None)
    for path, body in (
        ("/cas", {"name": "hsm-root", "key_backend": "pkcs11"}),
        ("/cas/root/subordinates", {"name": "hsm-sub", "key_backend": "pkcs11"}),
        ("/cas", {"name": "soft-root"}),
        ("/matter/paa", {"name": "hsm-paa", "key_backend": "pkcs11"}),
        ("/matter/rcac", {"name": "soft-rcac", "key_backend": "pkcs8"}),
        ("/cas/imports", {"name": "hsm-import", "key_backend": "pkcs11"}),
    ):
        status, problem, _ = await env.call("POST", path, token=owner, json=body)
        assert status == 201, problem
    backend_of = {
        name: (await env.engine.get_ca(name)).key.backend
        for name in ("hsm-root", "hsm-sub", "soft-root", "hsm-paa", "soft-rcac", "hsm-import")
    }
    assert backend_of == {
        "hsm-root": "pkcs11",
        "hsm-sub": "pkcs11",
        "soft-root": "pkcs8",
        "hsm-paa": "pkcs11",
        "soft-rcac": "pkcs8",
        "hsm-import": "pkcs11",
    }
    # Configured here, yet never a choice: a carried key is made elsewhere.
    for path in ("/cas", "/cas/root/subordinates", "/matter/paa", "/cas/imports"):
        status, problem, _ = await env.call(
            "POST", path, token=owner, json={"name": "p", "key_backend": "carried"}
        )
        assert status == 400, (path, problem)
        assert "key_backend must be one of pkcs11, pkcs8" in problem["detail"]


async def test_issue_takes_hours(env: AdminEnv) -> None:
    issuer = await env.token("issuer", Role.ISSUER, None)
    status, body, _ = await env.call(
        "POST",
        "/cas/teamA/certificates",
        token=issuer,
        json={"csr": csr_pem("hours.example.com"), "hours": 5},
    )
    assert status == 201, body
    leaf = x509.load_pem_x509_certificates(body.encode())[0]
    # notAfter is five hours after the request (notBefore is backdated a little).
    lifetime = leaf.not_valid_after_utc - env.clock.now()
    assert timedelta(hours=4, minutes=55) <= lifetime <= timedelta(hours=5, minutes=1)
    for bad in ({"hours": 0}, {"hours": 1.5}, {"hours": 5, "days": 1}):
        status, problem, _ = await env.call(
            "POST", "/cas/teamA/certificates", token=issuer, json={"csr": csr_pem(), **bad}
        )
        assert status == 400, (bad, problem)
        assert problem["type"] == "urn:privca:problem:malformed"
