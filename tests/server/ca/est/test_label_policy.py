"""EST label name policy (the label's grant), renewal rules and certificate login to the label."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.ca import api, grants
from server.ca.errors import EngineError, ProblemKind
from server.ca.est import api as est_api
from server.ca.est import enrollment
from server.ca.types import CAStatus, Principal
from server.store.est_memory import MemoryEstRepository
from tests.protocols.est.conftest import external_leaf, make_external_ca
from tests.server.ca.est.conftest import OP
from tests.support import FakeClock, make_csr, pem

DER = serialization.Encoding.DER
ENROLL = est_api.EstOperation.ENROLL
REENROLL = est_api.EstOperation.REENROLL


def _csr(*names: str, subject: str | None = "dev1") -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(make_csr(names, subject=subject)[0])


def _user(label: str) -> est_api.ClientIdentity:
    return est_api.ClientIdentity(principal=Principal("est-user", f"{label}/dev1"))


async def _issue(
    service: est_api.EstService,
    label: est_api.EstLabel,
    csr: x509.CertificateSigningRequest,
    *,
    client: est_api.ClientIdentity | None = None,
    operation: est_api.EstOperation = ENROLL,
) -> x509.Certificate:
    outcome = await service.enroll(
        label, csr, client=client or _user(label.name), operation=operation
    )
    assert isinstance(outcome, est_api.Enrolled)
    return outcome.certificate


async def _refused(
    service: est_api.EstService,
    label: est_api.EstLabel,
    csr: x509.CertificateSigningRequest,
) -> EngineError:
    with pytest.raises(EngineError) as err:
        await service.enroll(label, csr, client=_user(label.name), operation=ENROLL)
    return err.value


POLICY = est_api.EstLabel(
    name="corp",
    dns_suffixes=("corp.internal",),
    allow_wildcard=True,
    ip_ranges=(ipaddress.ip_network("10.0.0.0/8"),),
    uri_patterns=("spiffe://corp/ns/iot/*",),
    email_domains=("corp.example",),
    subject_patterns=("CN=fire-sensor-*",),
    max_days=30,
)


def test_label_grant_is_the_label_policy() -> None:
    assert enrollment.label_grant(POLICY, "issuing") == grants.Grant(
        cas=frozenset({"issuing"}),
        profiles=frozenset({"device"}),
        dns_suffixes=("corp.internal",),
        allow_wildcard=True,
        ip_ranges=(ipaddress.ip_network("10.0.0.0/8"),),
        email_domains=("corp.example",),
        uri_patterns=("spiffe://corp/ns/iot/*",),
        subject_patterns=("CN=fire-sensor-*",),
        max_lifetime=timedelta(days=30),
    )
    # A label without policy: device identities only, on its own CA.
    default = est_api.EstLabel(name="default")
    assert enrollment.label_grant(default, "issuing") == dataclasses.replace(
        grants.DEVICE_IDENTITY, cas=frozenset({"issuing"})
    )


async def test_default_label_issues_device_identities_only(
    service: est_api.EstService,
) -> None:
    label = await service.get_label(None)
    cert = await _issue(service, label, _csr())
    assert cert.subject.rfc4514_string() == "CN=dev1"
    for name, rule in (
        ("dns:vault.corp.internal", "grant.san-type: DNS names are not granted"),
        ("ip:10.0.0.1", "grant.san-type: IP addresses are not granted"),
        ("uri:spiffe://corp/ns/prod/sa/admin", "grant.san-type: URIs are not granted"),
        ("email:ceo@corp.example", "grant.san-type: e-mail addresses are not granted"),
    ):
        err = await _refused(service, label, _csr(name))
        assert err.kind is ProblemKind.REJECTED_IDENTIFIER
        assert err.detail == rule


async def test_label_policy_grants_what_it_names(service: est_api.EstService) -> None:
    await service.add_label(POLICY, actor=OP)
    label = await service.get_label("corp")
    cert = await _issue(
        service,
        label,
        _csr(
            "dns:s1.corp.internal",
            "dns:*.s1.corp.internal",
            "ip:10.1.2.3",
            "uri:spiffe://corp/ns/iot/sensor",
            "email:ops@corp.example",
            subject="fire-sensor-1",
        ),
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=30)
    for csr, rule in (
        (_csr("dns:vault.other.internal", subject="fire-sensor-1"), "grant.dns-suffix"),
        (_csr("ip:192.168.0.1", subject="fire-sensor-1"), "grant.ip-range"),
        (_csr("uri:spiffe://corp/ns/prod/sa/admin", subject="fire-sensor-1"), "grant.uri-pattern"),
        (_csr("email:ceo@other.example", subject="fire-sensor-1"), "grant.email-domain"),
        (_csr(subject="door-lock-1"), "grant.subject"),
    ):
        assert (await _refused(service, label, csr)).detail.startswith(rule)
    await service.add_label(
        dataclasses.replace(POLICY, name="nowild", allow_wildcard=False), actor=OP
    )
    nowild = await service.get_label("nowild")
    err = await _refused(service, nowild, _csr("dns:*.corp.internal", subject="fire-sensor-1"))
    assert err.detail.startswith("grant.wildcard")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param({"allow_wildcard": True}, "wildcards need", id="fail/wildcard-without-dns"),
        pytest.param({"max_days": 0}, "max days", id="fail/max-days-0"),
        pytest.param({"dns_suffixes": ("",)}, "empty DNS suffix", id="fail/empty-suffix"),
        pytest.param({"subject_patterns": (" ",)}, "empty subject", id="fail/blank-subject"),
        pytest.param(
            {"subject_patterns": ("fire-*",)}, "not an RFC 4514", id="fail/subject-not-a-name"
        ),
    ],
)
async def test_label_policy_is_validated(
    service: est_api.EstService, change: dict[str, object], why: str
) -> None:
    with pytest.raises(EngineError, match=why) as err:
        await service.add_label(est_api.EstLabel(name="bad", **change), actor=OP)  # type: ignore[arg-type]
    assert err.value.kind is ProblemKind.MALFORMED


async def test_renewal_keeps_the_profile_and_is_capped_by_the_label(
    service: est_api.EstService,
) -> None:
    await service.add_label(est_api.EstLabel(name="x", max_days=20), actor=OP)
    label = await service.get_label("x")
    first = await _issue(service, label, _csr())
    device = await service.authenticate_certificate(
        label, first.public_bytes(DER), for_reenroll=True
    )
    assert device.profile == "device"
    renewed = await _issue(service, label, _csr(), client=device, operation=REENROLL)
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc <= timedelta(days=20)
    # The label now issues another profile: the renewal keeps the original's, which
    # the label no longer grants.
    await service.remove_label("x", actor=OP)
    await service.add_label(est_api.EstLabel(name="x", profile="tls-client"), actor=OP)
    relabelled = await service.get_label("x")
    with pytest.raises(EngineError, match=r"grant\.profile: device is not granted") as err:
        await service.enroll(relabelled, _csr(), client=device, operation=REENROLL)
    assert err.value.kind is ProblemKind.INVALID_PROFILE


async def _login_refusal(
    service: est_api.EstService, label: est_api.EstLabel, der: bytes, **kw: bool
) -> str:
    with pytest.raises(EngineError) as err:
        await service.authenticate_certificate(label, der, **kw)
    assert err.value.kind is ProblemKind.UNAUTHORIZED
    return err.value.detail


async def test_certificate_login_needs_client_auth(
    service: est_api.EstService, engine: api.CAEngine
) -> None:
    csr, _ = make_csr(("dns:web.internal",), subject="web")
    server = (
        await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-server")
    ).certificate
    await service.add_label(est_api.EstLabel(name="web", profile="tls-server"), actor=OP)
    label = await service.get_label("web")
    detail = await _login_refusal(service, label, server.public_bytes(DER))
    assert "clientAuth" in detail
    vendor, vendor_key = make_external_ca()
    idevid, _ = external_leaf(vendor, vendor_key, client_auth=False)
    await service.add_label(
        est_api.EstLabel(name="factory", trust_anchors_pem=pem(vendor)), actor=OP
    )
    detail = await _login_refusal(
        service, await service.get_label("factory"), idevid.public_bytes(DER)
    )
    assert "clientAuth" in detail


async def test_certificate_login_is_bound_to_the_label(
    service: est_api.EstService, engine: api.CAEngine
) -> None:
    await engine.create_subordinate("other", parent="root", actor=OP)
    await service.add_label(est_api.EstLabel(name="a"), actor=OP)
    await service.add_label(est_api.EstLabel(name="b"), actor=OP)
    await service.add_label(est_api.EstLabel(name="elsewhere", ca="other"), actor=OP)
    a, b = await service.get_label("a"), await service.get_label("b")
    cert = (await _issue(service, a, _csr())).public_bytes(DER)
    assert (await service.authenticate_certificate(a, cert, for_reenroll=True)).issuer_ca
    for kw in ({}, {"for_reenroll": True}):
        assert "issued on label a, not b" in await _login_refusal(service, b, cert, **kw)
        detail = await _login_refusal(service, await service.get_label("elsewhere"), cert, **kw)
        assert "is not issued by CA other of label elsewhere" in detail
    # Issued outside EST (CLI): a login for its CA and profile, never a renewal.
    csr, _ = make_csr((), subject="cli")
    cli = await engine.issue(csr, grant=grants.OPERATOR, principal=OP, profile="tls-client")
    der = cli.certificate.public_bytes(DER)
    assert "has profile tls-client; label a issues device" in await _login_refusal(service, a, der)
    await service.add_label(est_api.EstLabel(name="c", profile="tls-client"), actor=OP)
    c = await service.get_label("c")
    assert (await service.authenticate_certificate(c, der)).profile == "tls-client"
    detail = await _login_refusal(service, c, der, for_reenroll=True)
    assert detail == "the certificate being renewed was not issued on label c"


async def test_certificate_login_checks_the_ca_state(
    service: est_api.EstService, engine: api.CAEngine
) -> None:
    label = await service.get_label(None)
    der = (await _issue(service, label, _csr())).public_bytes(DER)
    await service.authenticate_certificate(label, der)

    async def set_status(name: str, status: CAStatus) -> None:
        ca = await engine.get_ca(name)
        updated = dataclasses.replace(ca, status=status)
        await engine.replace_ca(ca, updated, actor=OP, action="test.ca-state", target=name)

    await set_status("root", CAStatus.REVOKED)
    detail = await _login_refusal(service, label, der, for_reenroll=True)
    assert "ca.ancestor-revoked: CA issuing is under revoked CA root" in detail
    await set_status("root", CAStatus.ACTIVE)
    await set_status("issuing", CAStatus.DISABLED)
    assert "ca.state: CA issuing is disabled" in await _login_refusal(service, label, der)


async def test_ca_list_is_at_most_five_seconds_old(
    engine: api.CAEngine, est_repo: MemoryEstRepository, est_clock: FakeClock
) -> None:
    """A privca CA used as a label's anchor is recognised (state, revocation) within 5 s."""
    now = [0.0]
    await engine.create_root("root", actor=OP)
    await engine.create_subordinate("issuing", parent="root", actor=OP)
    service = est_api.EstService(engine, est_repo, clock=est_clock, monotonic=lambda: now[0])
    vendor, vendor_key = make_external_ca()
    await service.add_label(
        est_api.EstLabel(name="factory", trust_anchors_pem=pem(vendor)), actor=OP
    )
    idevid, _ = external_leaf(vendor, vendor_key)
    # A login on an anchored label reads privca's CA list (to spot privca anchors).
    factory = await service.get_label("factory")
    assert (
        await service.authenticate_certificate(factory, idevid.public_bytes(DER))
    ).issuer_ca is None
    late = await engine.create_subordinate("late", parent="root", actor=OP)
    await service.add_label(
        est_api.EstLabel(name="partner", trust_anchors_pem=pem(late.certificate)), actor=OP
    )
    csr, _ = make_csr((), subject="partner-1")
    issued = await engine.issue(
        csr, grant=grants.OPERATOR, principal=OP, profile="device", ca="late"
    )
    der = issued.certificate.public_bytes(DER)
    partner = await service.get_label("partner")
    stale = await service.authenticate_certificate(partner, der)
    assert stale.issuer_ca is None  # the list read before "late" existed
    now[0] += 5.0
    ident = await service.authenticate_certificate(partner, der)
    assert ident.issuer_ca is not None
    assert ident.issuer_ca.name == "late"
    # The list is cached again now; a state change of the CA still counts at once.
    ca = await engine.get_ca("late")
    disabled = await engine.replace_ca(
        ca,
        dataclasses.replace(ca, status=CAStatus.DISABLED),
        actor=OP,
        action="test.ca-state",
        target="late",
    )
    assert "ca.state: CA late is disabled" in await _login_refusal(service, partner, der)
    await engine.replace_ca(
        disabled,
        dataclasses.replace(disabled, status=ca.status),
        actor=OP,
        action="test.ca-state",
        target="late",
    )
    await engine.revoke(issued.certificate.serial_number, principal=OP, ca="late")
    assert "revoked" in await _login_refusal(service, partner, der)


async def test_account_narrowing(service: est_api.EstService) -> None:
    """An account gets at most its label's grant, narrowed by its own limits."""
    await service.add_label(
        est_api.EstLabel(name="corp", dns_suffixes=("corp.internal",), max_days=60), actor=OP
    )
    await service.add_user(
        "corp",
        "lab",
        "long-enough-pw",
        actor=OP,
        dns_suffixes=("lab.corp.internal",),
        subject_patterns=("CN=lab-*",),
        max_days=10,
    )
    label = await service.get_label("corp")
    # The second login comes from the verified-password cache: the same narrowing.
    logins = [
        await service.authenticate_password(label, "lab", "long-enough-pw", client="192.0.2.1")
        for _ in "12"
    ]
    for client in logins:
        assert client is not None
        cert = await _issue(
            service, label, _csr("dns:a.lab.corp.internal", subject="lab-1"), client=client
        )
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=10)
    client = logins[0]
    assert client is not None
    for csr, rule in (
        (_csr("dns:b.corp.internal", subject="lab-1"), "grant.dns-suffix"),
        (_csr("dns:a.lab.corp.internal", subject="prod-1"), "grant.subject"),
    ):
        with pytest.raises(EngineError) as err:
            await service.enroll(label, csr, client=client, operation=ENROLL)
        assert err.value.detail.startswith(rule)
    # The label's other accounts keep the label's grant.
    await service.add_user("corp", "ops", "long-enough-pw", actor=OP)
    ops = await service.authenticate_password(label, "ops", "long-enough-pw", client="192.0.2.1")
    assert ops is not None
    await _issue(service, label, _csr("dns:b.corp.internal"), client=ops)
    # Never wider than the label.
    with pytest.raises(EngineError, match=r"other\.example are not under the label's") as err:
        await service.add_user(
            "corp", "bad", "long-enough-pw", actor=OP, dns_suffixes=("other.example",)
        )
    assert err.value.kind is ProblemKind.MALFORMED
    with pytest.raises(EngineError, match="max days"):
        await service.add_user("corp", "bad", "long-enough-pw", actor=OP, max_days=0)
    await service.add_label(
        est_api.EstLabel(name="sensors", subject_patterns=("CN=fire-sensor-*",)), actor=OP
    )
    with pytest.raises(EngineError, match="not among the label's"):
        await service.add_user(
            "sensors", "bad", "long-enough-pw", actor=OP, subject_patterns=("CN=*",)
        )
