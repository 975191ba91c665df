"""The issuance pipeline: grants, CA state up the chain, one order of checks for every signer."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from server.ca import api, grants, keys, profiles
from server.ca.errors import EngineError, ProblemKind
from server.ca.matter import api as matter_api
from server.ca.types import CA, CAStatus, CertQuery, KeyAlgorithm, Principal
from server.store.memory import MemoryRepository
from tests.support import make_csr

OP = Principal("operator", "test")
WEB = grants.Grant(
    cas=frozenset({"issuing"}),
    profiles=frozenset({"tls-server"}),
    dns_suffixes=("corp.internal",),
    ip_ranges=(ipaddress.ip_network("10.0.0.0/8"),),
    max_lifetime=timedelta(days=30),
)


async def _tiers(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP)
    await engine.create_subordinate("team", parent="issuing", actor=OP)
    await engine.create_subordinate("other", parent="root", actor=OP)


async def _set_status(engine: api.CAEngine, name: str, status: CAStatus) -> CA:
    ca = await engine.get_ca(name)
    await engine.replace_ca(
        ca, replace(ca, status=status), actor=OP, action="test.state", target=name
    )
    return ca


async def _refused(engine: api.CAEngine, grant: grants.Grant, **kw: object) -> EngineError:
    names = kw.pop("names", ["dns:a.corp.internal"])
    csr, _ = make_csr(names)  # type: ignore[arg-type]
    opts: dict[str, object] = {"profile": "tls-server", "ca": "issuing"}
    opts.update(kw)
    with pytest.raises(EngineError) as info:
        await engine.issue(csr, principal=OP, grant=grant, **opts)  # type: ignore[arg-type]
    return info.value


async def test_grant_scope_covers_the_subtree_only(engine: api.CAEngine) -> None:
    await _tiers(engine)
    csr, _ = make_csr(["dns:a.corp.internal"])
    issued = await engine.issue(csr, principal=OP, grant=WEB, profile="tls-server", ca="team")
    assert issued.chain[0].subject == (await engine.get_ca("team")).certificate.subject
    err = await _refused(engine, WEB, ca="other")
    assert err.kind is ProblemKind.UNAUTHORIZED
    assert err.detail.startswith("grant.ca: ")
    err = await _refused(engine, WEB, ca="root")
    assert err.kind is ProblemKind.UNAUTHORIZED


async def test_grant_profile_names_and_lifetime(engine: api.CAEngine) -> None:
    await _tiers(engine)
    err = await _refused(engine, WEB, profile="short-lived")
    assert err.kind is ProblemKind.INVALID_PROFILE
    assert err.detail.startswith("grant.profile: ")
    err = await _refused(engine, WEB, names=["dns:vault.other.internal"])
    assert err.kind is ProblemKind.REJECTED_IDENTIFIER
    assert err.subproblems[0].detail.startswith("grant.dns-suffix: ")
    err = await _refused(engine, WEB, names=["dns:a.corp.internal", "ip:192.168.1.1"])
    assert err.subproblems[0].detail.startswith("grant.ip-range: ")
    err = await _refused(engine, WEB, lifetime=timedelta(days=31))
    assert err.kind is ProblemKind.MALFORMED
    assert "grant.max-lifetime" in err.detail
    # Without an explicit lifetime the grant caps the profile's default (90 days).
    csr, _ = make_csr(["dns:a.corp.internal"])
    issued = await engine.issue(csr, principal=OP, grant=WEB, profile="tls-server", ca="issuing")
    cert = issued.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=30)


async def test_subject_pattern_applies_to_the_issued_subject(engine: api.CAEngine) -> None:
    await _tiers(engine)
    sensors = grants.Grant(
        cas=frozenset({"issuing"}),
        profiles=frozenset({"device"}),
        subject_patterns=("CN=fire-sensor-*",),
    )
    csr, _ = make_csr([], subject="fire-sensor-7")
    await engine.issue(csr, principal=OP, grant=sensors, profile="device", ca="issuing")
    csr, _ = make_csr([], subject="admin")
    with pytest.raises(EngineError) as info:
        await engine.issue(csr, principal=OP, grant=sensors, profile="device", ca="issuing")
    assert info.value.detail.startswith("grant.subject: ")


@pytest.mark.parametrize("status", [CAStatus.DISABLED, CAStatus.REVOKED, CAStatus.PENDING])
async def test_a_ca_that_is_not_active_issues_nothing(
    engine: api.CAEngine, status: CAStatus
) -> None:
    await _tiers(engine)
    await _set_status(engine, "issuing", status)
    err = await _refused(engine, grants.OPERATOR)
    assert err.kind is ProblemKind.POLICY
    assert err.detail == f"ca.state: CA issuing is {status}"
    with pytest.raises(EngineError, match=r"ca\.state"):
        await engine.issue_with_generated_key(
            principal=OP,
            grant=grants.OPERATOR,
            profile="tls-server",
            key_algorithm=KeyAlgorithm.EC_P256,
            subject=x509.Name([]),
            names=[x509.DNSName("a.corp.internal")],
            ca="issuing",
        )
    with pytest.raises(EngineError, match=r"ca\.state"):
        await engine.create_subordinate("below", parent="issuing", actor=OP)


async def test_a_revoked_ancestor_stops_the_subtree_a_disabled_one_does_not(
    engine: api.CAEngine,
) -> None:
    await _tiers(engine)
    csr, _ = make_csr(["dns:a.corp.internal"])
    await _set_status(engine, "root", CAStatus.DISABLED)  # an offline root
    await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="tls-server", ca="team")
    await _set_status(engine, "issuing", CAStatus.REVOKED)
    err = await _refused(engine, grants.OPERATOR, ca="team")
    assert err.detail == "ca.ancestor-revoked: CA team is under revoked CA issuing"
    # A sibling subtree keeps issuing.
    await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="tls-server", ca="other")


async def test_an_expired_ca_issues_nothing(
    memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    engine = api.CAEngine(memory_repo, key_backend)
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, lifetime=timedelta(days=1))

    class Later:
        def now(self):  # type: ignore[no-untyped-def]
            return engine.now() + timedelta(days=2)

    later = api.CAEngine(memory_repo, key_backend, clock=Later())
    with pytest.raises(EngineError) as info:
        await later.issue(
            make_csr(["dns:a.internal"])[0],
            principal=OP,
            grant=grants.OPERATOR,
            profile="tls-server",
            ca="issuing",
        )
    assert info.value.detail.startswith("ca.expired: ")
    # Nor does it get a delegated OCSP signer: its status is no longer answered.
    stored = len(await later.find_certificates(CertQuery(limit=1000)))
    with pytest.raises(EngineError) as info:
        await later.issue_ocsp_signer(await later.get_ca("issuing"), lifetime=timedelta(days=7))
    assert info.value.detail == "ca.expired: CA issuing expired"
    assert len(await later.find_certificates(CertQuery(limit=1000))) == stored


async def test_a_state_change_reaches_another_node_within_the_ttl(
    memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    now = [0.0]
    node_a = api.CAEngine(memory_repo, key_backend)
    node_b = api.CAEngine(memory_repo, key_backend, monotonic=lambda: now[0])
    await node_a.create_root("root", actor=OP)
    await node_a.create_subordinate("issuing", parent="root", actor=OP)
    csr, _ = make_csr(["dns:a.internal"])
    opts: dict[str, object] = {"profile": "tls-server", "ca": "issuing"}
    await node_b.issue(csr, principal=OP, grant=grants.OPERATOR, **opts)  # type: ignore[arg-type]
    await _set_status(node_a, "issuing", CAStatus.DISABLED)
    now[0] += api.STATE_TTL + 0.1
    assert api.STATE_TTL < 5
    with pytest.raises(EngineError, match=r"ca\.state"):
        await node_b.issue(csr, principal=OP, grant=grants.OPERATOR, **opts)  # type: ignore[arg-type]


async def test_status_signing_continues_for_disabled_and_revoked_cas(
    engine: api.CAEngine,
) -> None:
    await _tiers(engine)
    ca = await _set_status(engine, "issuing", CAStatus.REVOKED)
    ca = await engine.get_ca("issuing")
    issuer = await engine.status_issuer(ca)
    assert issuer.certificate.subject == ca.certificate.subject
    record, _ = await engine.issue_ocsp_signer(ca, lifetime=timedelta(days=7))
    cert = x509.load_der_x509_certificate(record.der)
    cert.verify_directly_issued_by(ca.certificate)
    assert record.profile == api.OCSP_SIGNER_PROFILE
    audit = await engine.audit_log(limit=1)
    assert audit[0].action == "ocsp.signer-issue"


async def test_ocsp_signer_refused_for_a_pending_ca(engine: api.CAEngine) -> None:
    await engine.create_import_request("imp", actor=OP)
    with pytest.raises(EngineError, match=r"ca\.state"):
        await engine.issue_ocsp_signer(await engine.get_ca("imp"), lifetime=timedelta(days=1))


async def test_matter_leaves_and_cas_pass_the_same_checks(engine: api.CAEngine) -> None:
    service = matter_api.MatterService(engine)
    await service.create_paa("paa", actor=OP, vid=0xFFF1)
    await service.create_pai("pai", paa="paa", vid=0xFFF1, pid=0x8000, actor=OP)
    dac_csr, _ = make_csr([], subject="device 1")
    only_general = grants.Grant(cas=frozenset({grants.ANY}), profiles=frozenset({"device"}))
    with pytest.raises(EngineError) as info:
        await service.issue_dac(dac_csr, pai="pai", actor=OP, grant=only_general)
    assert info.value.detail.startswith("grant.profile: ")
    with pytest.raises(EngineError) as info:
        async for _ in service.issue_dacs(
            pai="pai", vid=0xFFF1, pid=0x8000, actor=OP, grant=only_general, count=1
        ):
            pass
    assert info.value.detail.startswith("grant.profile: ")
    await _set_status(engine, "pai", CAStatus.DISABLED)
    with pytest.raises(EngineError, match=r"ca\.state"):
        await service.issue_dac(dac_csr, pai="pai", actor=OP, grant=grants.OPERATOR)
    await _set_status(engine, "paa", CAStatus.DISABLED)
    with pytest.raises(EngineError, match=r"ca\.state"):
        await service.create_pai("pai-2", paa="paa", vid=0xFFF1, actor=OP)


def test_signers_keep_the_key_inside() -> None:
    signer = keys.KeySigner(keys.generate_private_key(KeyAlgorithm.EC_P256))
    assert not [
        a for a in dir(signer) if "key" in a and not a.startswith("_") and a != "public_key"
    ]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    csr = signer.sign_csr(x509.CertificateSigningRequestBuilder().subject_name(name))
    assert csr.is_signature_valid


async def test_profile_key_rule_applies_to_csrs_and_generated_keys(
    memory_repo: MemoryRepository, key_backend: keys.Pkcs8KeyBackend
) -> None:
    """A profile's key algorithms refuse a CSR's key and a key the engine would generate."""
    ec_only = replace(
        profiles.BUILTIN_PROFILES["tls-server"],
        name="ec-only",
        allowed_key_algorithms=frozenset({KeyAlgorithm.EC_P256}),
    )
    engine = api.CAEngine(
        memory_repo,
        key_backend,
        settings=api.EngineSettings(
            default_ca="issuing", profiles={**profiles.BUILTIN_PROFILES, "ec-only": ec_only}
        ),
    )
    await _tiers(engine)
    stored = len(await engine.find_certificates(CertQuery(limit=1000)))
    csr, _ = make_csr(["dns:a.corp.internal"], alg=KeyAlgorithm.ED25519)
    with pytest.raises(EngineError) as info:
        await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="ec-only")
    assert info.value.kind is ProblemKind.BAD_PUBLIC_KEY
    assert info.value.detail.startswith("profile.key: ")
    with pytest.raises(EngineError) as info:
        await engine.issue_with_generated_key(
            principal=OP,
            grant=grants.OPERATOR,
            profile="ec-only",
            key_algorithm=KeyAlgorithm.ED25519,
            subject=x509.Name([]),
            names=[x509.DNSName("a.corp.internal")],
        )
    assert info.value.kind is ProblemKind.BAD_PUBLIC_KEY
    assert info.value.detail.startswith("profile.key: ")
    assert len(await engine.find_certificates(CertQuery(limit=1000))) == stored
    # The control: an allowed key is issued both ways.
    csr, _ = make_csr(["dns:a.corp.internal"])
    await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="ec-only")


async def test_a_request_naming_nobody_is_refused(engine: api.CAEngine) -> None:
    """A device profile needs no SAN, but a certificate must name someone (RFC 5280 §4.1.2.6)."""
    await _tiers(engine)
    stored = len(await engine.find_certificates(CertQuery(limit=1000)))
    csr, _ = make_csr([])
    with pytest.raises(EngineError) as info:
        await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="device")
    assert info.value.kind is ProblemKind.BAD_CSR
    assert info.value.detail == "request.subject: the request names no subject and no SAN"
    assert len(await engine.find_certificates(CertQuery(limit=1000))) == stored
    csr, _ = make_csr([], subject="fire-sensor-1")
    await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="device")


async def test_a_leaf_never_outlives_its_issuer(engine: api.CAEngine) -> None:
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP, lifetime=timedelta(days=2))
    ca = await engine.get_ca("issuing")
    csr, _ = make_csr(["dns:a.internal"])
    issued = await engine.issue(csr, principal=OP, grant=grants.OPERATOR, profile="tls-server")
    assert issued.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


async def test_a_window_that_ended_is_refused(engine: api.CAEngine) -> None:
    """notBefore within the backdate limit, notAfter already past: nothing to issue."""
    await _tiers(engine)
    now = engine.now()
    err = await _refused(
        engine,
        grants.OPERATOR,
        not_before=now - timedelta(minutes=3),
        not_after=now - timedelta(minutes=1),
    )
    assert err.kind is ProblemKind.MALFORMED
    assert err.detail == "notAfter is in the past"
