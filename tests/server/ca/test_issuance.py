"""Leaf issuance: key types, profiles, lifetimes, SAN types, pkilint, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from server.ca import api, grants, issuance, profiles
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CAMode, CertQuery, KeyAlgorithm, Principal
from server.store.memory import MemoryRepository
from tests.support import lint_errors, make_csr, openssl_verify

OP = Principal("operator", "test")
ALL_KEYS = list(KeyAlgorithm)
NAMES_FOR = {
    "tls-server": ["dns:www.corp.internal", "ip:10.1.2.3"],
    "tls-client": ["email:alice@corp.internal"],
    "device": ["uri:https://devices.corp.internal/fire-sensor-123"],
    "short-lived": ["dns:api.corp.internal"],
}


async def _hierarchy(engine: api.CAEngine, alg: KeyAlgorithm = KeyAlgorithm.EC_P256) -> None:
    await engine.create_root("root", actor=OP, key_algorithm=alg)
    await engine.create_subordinate(
        "issuing", parent="root", actor=OP, key_algorithm=alg, path_length=0
    )


@pytest.mark.parametrize("ca_alg", ALL_KEYS, ids=[f"ca/{a}" for a in ALL_KEYS])
async def test_every_ca_key_type_issues_lint_clean(
    engine: api.CAEngine, ca_alg: KeyAlgorithm
) -> None:
    await _hierarchy(engine, ca_alg)
    for prof in profiles.BUILTIN_PROFILES:
        csr, _ = make_csr(NAMES_FOR[prof], subject="fire-sensor-123" if prof == "device" else None)
        issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile=prof)
        assert lint_errors(issued.certificate) == [], prof
        for ca_cert in issued.chain:
            assert lint_errors(ca_cert) == []
        if not ca_alg.startswith("ml-dsa"):
            result = openssl_verify(issued.certificate, issued.chain)
            assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("leaf_alg", ALL_KEYS, ids=[f"leaf/{a}" for a in ALL_KEYS])
async def test_every_leaf_key_type_and_profile(
    engine: api.CAEngine, leaf_alg: KeyAlgorithm
) -> None:
    await _hierarchy(engine)
    for prof in profiles.BUILTIN_PROFILES:
        csr, _ = make_csr(
            NAMES_FOR[prof], alg=leaf_alg, subject="dev-1" if prof == "device" else None
        )
        issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile=prof)
        cert = issued.certificate
        assert lint_errors(cert) == [], prof
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.digital_signature
        # keyEncipherment only for RSA keys in profiles that allow RSA key transport.
        rsa_kt = leaf_alg.startswith("rsa") and profiles.BUILTIN_PROFILES[prof].rsa_key_encipherment
        assert ku.value.key_encipherment is rsa_kt
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == list(profiles.BUILTIN_PROFILES[prof].extended_key_usages)
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert cdp[0].full_name is not None
        assert str(cdp[0].full_name[0].value).startswith("http://127.0.0.1:8080/crl/")
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        assert {d.access_method._name for d in aia} == {"OCSP", "caIssuers"}


async def test_tls_server_profile_details(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr(["dns:wiki.internal", "ip:10.0.0.1"], subject="ignored")
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    cert = issued.certificate
    assert cert.subject.rfc4514_string() == "CN=wiki.internal"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == timedelta(days=90)
    assert cert.serial_number >= 1 << 64


async def test_device_profile_keeps_free_form_subject(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr([], subject="fire-sensor-123")
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="device")
    assert issued.certificate.subject.rfc4514_string() == "CN=fire-sensor-123"
    with pytest.raises(x509.ExtensionNotFound):
        issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert lint_errors(issued.certificate) == []


async def test_empty_subject_makes_san_critical(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    long_name = "a" * 60 + ".corp.internal"
    csr, _ = make_csr([f"dns:{long_name}"])
    issued = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert len(issued.certificate.subject) == 0
    assert issued.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).critical
    assert lint_errors(issued.certificate) == []


@pytest.mark.parametrize(
    ("lifetime", "ok"),
    [
        pytest.param(timedelta(days=1), True, id="ok/narrower"),
        pytest.param(timedelta(days=398), True, id="ok/max"),
        pytest.param(timedelta(days=399), False, id="fail/wider"),
    ],
)
async def test_lifetime_narrowing(engine: api.CAEngine, lifetime: timedelta, ok: bool) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr()
    if ok:
        issued = await engine.issue(
            csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", lifetime=lifetime
        )
        cert = issued.certificate
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == lifetime
    else:
        with pytest.raises(EngineError) as err:
            await engine.issue(
                csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", lifetime=lifetime
            )
        assert err.value.kind is ProblemKind.MALFORMED
        assert "exceeds the maximum" in err.value.detail


async def test_explicit_window_and_empty_window(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    issued = await engine.issue(
        csr,
        grant=grants.OPERATOR,
        principal=OP,
        profile="tls-server",
        not_before=start,
        not_after=start + timedelta(days=2),
    )
    assert issued.certificate.not_valid_before_utc == start
    with pytest.raises(EngineError, match="later than notBefore"):
        await engine.issue(
            csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            not_before=start,
            not_after=start,
        )


async def test_backdating_is_capped_at_one_hour(engine: api.CAEngine) -> None:
    # Issue 12 repro: finalize honoured a notBefore ~397 days back.
    await _hierarchy(engine)
    csr, _ = make_csr()
    now = datetime.now(UTC).replace(microsecond=0)
    with pytest.raises(EngineError, match="at most 1:00:00 in the past") as info:
        await engine.issue(
            csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            not_before=now - timedelta(days=397),
        )
    assert info.value.kind is ProblemKind.MALFORMED
    with pytest.raises(EngineError, match="in the past"):
        await engine.issue(
            csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            not_before=now - timedelta(minutes=61),
        )
    issuing = (await engine.chain_of(await engine.get_ca("issuing")))[0]
    for back in (timedelta(minutes=59), timedelta(minutes=1)):
        skewed = now - back
        issued = await engine.issue(
            csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", not_before=skewed
        )
        expected = max(skewed, issuing.not_valid_before_utc)
        assert issued.certificate.not_valid_before_utc == expected


async def test_leaf_never_starts_before_its_issuer(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    issuing = (await engine.chain_of(await engine.get_ca("issuing")))[0]
    csr, _ = make_csr()
    start = issuing.not_valid_before_utc - timedelta(seconds=30)
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", not_before=start
    )
    assert issued.certificate.not_valid_before_utc == issuing.not_valid_before_utc


async def test_short_lived_profile_and_ca_mode(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, mode=CAMode.SHORT_LIVED)
    csr, _ = make_csr()
    with pytest.raises(EngineError, match="exceeds the maximum"):
        await engine.issue(
            csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="short-lived",
            lifetime=timedelta(days=8),
        )
    # The CA's mode caps every profile at 7 days, not just short-lived.
    with pytest.raises(EngineError, match="exceeds the maximum"):
        await engine.issue(
            csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            lifetime=timedelta(days=30),
        )
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", lifetime=timedelta(days=7)
    )
    cert = issued.certificate
    # Short-lived leaves carry no CDP and no OCSP URL by default, but keep caIssuers.
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_method._name for d in aia] == ["caIssuers"]
    assert lint_errors(cert) == []


@pytest.mark.parametrize(
    ("prof", "name"),
    [
        pytest.param("tls-server", "email:a@b.internal", id="fail/email-in-tls-server"),
        pytest.param("tls-server", "uri:https://x.internal/", id="fail/uri-in-tls-server"),
        pytest.param("device", "uri:urn:dev:x", id="fail/uri-without-host"),
        pytest.param("short-lived", "email:a@b.internal", id="fail/email-in-short-lived"),
        pytest.param("tls-server", "dns:Upper.Internal", id="fail/uppercase-dns"),
        pytest.param("tls-server", "dns:bad..name", id="fail/empty-label"),
    ],
)
async def test_san_type_refusals(engine: api.CAEngine, prof: str, name: str) -> None:
    await _hierarchy(engine)
    csr, _ = make_csr([name])
    with pytest.raises(EngineError) as err:
        await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile=prof)
    assert err.value.kind is ProblemKind.REJECTED_IDENTIFIER
    assert err.value.subproblems


async def test_identifier_policy_per_ca(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate(
        "issuing", parent="root", actor=OP, dns_suffixes=[".internal"], ip_networks=["10.0.0.0/8"]
    )
    ok, _ = make_csr(["dns:a.internal", "dns:*.b.internal", "ip:10.9.8.7"])
    await engine.issue(ok, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    bad, _ = make_csr(["dns:a.example.com", "ip:192.168.1.1", "dns:c.internal"])
    with pytest.raises(EngineError) as err:
        await engine.issue(bad, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    assert {s.identifier for s in err.value.subproblems} == {"dns:a.example.com", "ip:192.168.1.1"}


async def test_bad_input_is_typed_and_stores_nothing(
    engine: api.CAEngine, memory_repo: MemoryRepository
) -> None:
    await _hierarchy(engine)
    before = len(memory_repo.certs)
    good_csr, _ = make_csr()
    tampered = bytearray(
        x509.load_pem_x509_csr(good_csr).public_bytes(
            __import__(
                "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
            ).Encoding.DER
        )
    )
    tampered[-5] ^= 0xFF
    cases: list[tuple[bytes, ProblemKind]] = [
        (b"not a csr", ProblemKind.BAD_CSR),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ProblemKind.BAD_CSR,
        ),
        (bytes(tampered), ProblemKind.BAD_CSR),
        (make_csr(key=rsa.generate_private_key(65537, 1024))[0], ProblemKind.BAD_PUBLIC_KEY),  # noqa: S505 - the weak key under test
        (make_csr(key=ec.generate_private_key(ec.SECP256K1()))[0], ProblemKind.BAD_PUBLIC_KEY),
        (make_csr(key=ed448.Ed448PrivateKey.generate())[0], ProblemKind.BAD_PUBLIC_KEY),
        (make_csr([])[0], ProblemKind.BAD_CSR),
    ]
    for data, kind in cases:
        with pytest.raises(EngineError) as err:
            await engine.issue(data, grant=grants.OPERATOR, principal=OP, profile="tls-server")
        assert err.value.kind is kind, (data[:40], err.value)
    with pytest.raises(EngineError) as err:
        await engine.issue(good_csr, grant=grants.OPERATOR, principal=OP, profile="no-such-profile")
    assert err.value.kind is ProblemKind.INVALID_PROFILE
    with pytest.raises(EngineError) as err:
        await engine.issue(
            good_csr, grant=grants.OPERATOR, principal=OP, profile="tls-server", ca="missing"
        )
    assert err.value.kind is ProblemKind.NOT_FOUND
    with pytest.raises(EngineError, match="differ from the request"):
        await engine.issue(
            good_csr,
            grant=grants.OPERATOR,
            principal=OP,
            profile="tls-server",
            names=[x509.DNSName("other.internal")],
        )
    assert len(memory_repo.certs) == before
    assert await engine.find_certificates(CertQuery(text="host.internal")) == []


async def test_generated_key_issuance(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    issued = await engine.issue_with_generated_key(
        grant=grants.OPERATOR,
        principal=OP,
        profile="device",
        key_algorithm=KeyAlgorithm.RSA_3072,
        subject=issuance.parse_name("CN=meter-7,serialNumber=A1B2"),
    )
    assert issued.private_key_pem
    assert b"BEGIN PRIVATE KEY" in issued.private_key_pem
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(issued.private_key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert issued.certificate.public_key() == key.public_key()
    assert lint_errors(issued.certificate) == []


async def test_inventory_search_and_audit(engine: api.CAEngine) -> None:
    await _hierarchy(engine)
    for n in ("alpha", "beta", "gamma"):
        csr, _ = make_csr([f"dns:{n}.internal"])
        await engine.issue(
            csr, grant=grants.OPERATOR, principal=Principal("acme", "acct-1"), profile="tls-server"
        )
    found = await engine.find_certificates(CertQuery(text="beta"))
    assert [r.sans for r in found] == [("dns:beta.internal",)]
    soon = datetime.now(UTC) + timedelta(days=100)
    ca = await engine.get_ca("issuing")
    assert len(await engine.find_certificates(CertQuery(ca_id=ca.id, expires_before=soon))) == 3
    log = await engine.audit_log(limit=10)
    assert log[0].action == "cert.issue"
    assert log[0].actor == "acme:acct-1"
    assert {e.action for e in await engine.audit_log(limit=100)} >= {
        "ca.create-root",
        "ca.create-sub",
        "cert.issue",
    }
