"""grants: default deny, one refusal per rule, narrowing never widens."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from server.ca import grants
from server.ca.errors import EngineError, ProblemKind

WEB = grants.Grant(
    cas=frozenset({"web-ca"}),
    profiles=frozenset({"tls-server"}),
    dns_suffixes=("corp.internal",),
    ip_ranges=(ipaddress.ip_network("10.1.0.0/16"),),
    email_domains=("corp.example",),
    uri_patterns=("spiffe://corp/ns/web/*",),
    subject_patterns=("CN=web-*",),
    max_lifetime=timedelta(days=90),
)
DAY = timedelta(days=1)


def _subject(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _check(grant: grants.Grant, *names: x509.GeneralName, **kw: object) -> None:
    opts: dict[str, object] = {"subject": _subject("web-1")}
    opts.update(kw)
    grants.check(grant, names=names, **opts)  # type: ignore[arg-type]


def _refused(grant: grants.Grant, *names: x509.GeneralName, **kw: object) -> EngineError:
    with pytest.raises(EngineError) as info:
        _check(grant, *names, **kw)
    return info.value


def test_granted_request_passes() -> None:
    _check(
        WEB,
        x509.DNSName("a.corp.internal"),
        x509.DNSName("corp.internal"),
        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
        x509.RFC822Name("ops@corp.example"),
        x509.UniformResourceIdentifier("spiffe://corp/ns/web/sa/front"),
    )


def _unauthorized(grant: grants.Grant, lineage: tuple[str, ...], profile: str) -> EngineError:
    with pytest.raises(EngineError) as info:
        grants.authorize(grant, lineage=lineage, profile=profile)
    return info.value


def test_empty_grant_allows_no_ca_and_no_profile() -> None:
    err = _unauthorized(grants.Grant(), ("web-ca",), "device")
    assert err.kind is ProblemKind.UNAUTHORIZED
    assert err.detail.startswith(f"{grants.Rule.CA}: ")
    err = _unauthorized(grants.Grant(cas=frozenset({grants.ANY})), ("web-ca",), "device")
    assert err.kind is ProblemKind.INVALID_PROFILE
    assert err.detail.startswith(f"{grants.Rule.PROFILE}: ")
    err = _refused(grants.Grant(), x509.DNSName("a.corp.internal"))
    assert err.detail.startswith(f"{grants.Rule.SAN_TYPE}: ")


def test_a_ca_grant_covers_its_subtree_only() -> None:
    grants.authorize(WEB, lineage=("web-issuing", "web-ca", "root"), profile="tls-server")
    err = _unauthorized(WEB, ("other-issuing", "root"), "tls-server")
    assert err.kind is ProblemKind.UNAUTHORIZED


def test_operator_grants_everything() -> None:
    grants.authorize(grants.OPERATOR, lineage=("x",), profile="anything")
    grants.check(
        grants.OPERATOR,
        subject=_subject("admin"),
        names=(
            x509.DNSName("*.a.b"),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.RFC822Name("a@b.c"),
            x509.UniformResourceIdentifier("spiffe://x/y"),
        ),
    )


def test_device_identity_default_refuses_every_san_type() -> None:
    names: list[x509.GeneralName] = [
        x509.DNSName("vault.corp.internal"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.UniformResourceIdentifier("spiffe://corp/ns/prod/sa/admin"),
        x509.RFC822Name("ceo@corp.example"),
    ]
    err = _refused(grants.DEVICE_IDENTITY, *names)
    assert err.kind is ProblemKind.REJECTED_IDENTIFIER
    assert [s.detail.split(":")[0] for s in err.subproblems] == [grants.Rule.SAN_TYPE] * 4
    assert [s.identifier for s in err.subproblems] == [str(n.value) for n in names]
    grants.check(grants.DEVICE_IDENTITY, subject=_subject("sensor"), names=())


def test_device_identity_refuses_server_profile() -> None:
    err = _unauthorized(grants.DEVICE_IDENTITY, ("any",), "tls-server")
    assert err.kind is ProblemKind.INVALID_PROFILE


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (x509.DNSName("vault.other.internal"), grants.Rule.DNS_SUFFIX),
        (x509.DNSName("evilcorp.internal"), grants.Rule.DNS_SUFFIX),
        (x509.DNSName("*.corp.internal"), grants.Rule.WILDCARD),
        (x509.IPAddress(ipaddress.ip_address("10.2.0.1")), grants.Rule.IP_RANGE),
        (x509.IPAddress(ipaddress.ip_address("::1")), grants.Rule.IP_RANGE),
        (x509.RFC822Name("ceo@corp.example.net"), grants.Rule.EMAIL_DOMAIN),
        (x509.UniformResourceIdentifier("spiffe://corp/ns/prod/sa/x"), grants.Rule.URI_PATTERN),
        (x509.RegisteredID(x509.ObjectIdentifier("1.2.3")), grants.Rule.SAN_TYPE),
    ],
)
def test_each_rule_refuses_and_names_itself(name: x509.GeneralName, rule: grants.Rule) -> None:
    err = _refused(WEB, x509.DNSName("ok.corp.internal"), name)
    assert err.kind is ProblemKind.REJECTED_IDENTIFIER
    assert len(err.subproblems) == 1
    assert err.detail.startswith(f"{rule}: ")


def test_wildcard_when_granted() -> None:
    _check(
        grants.Grant(
            profiles=frozenset({"tls-server"}), dns_suffixes=("corp.internal",), allow_wildcard=True
        ),
        x509.DNSName("*.corp.internal"),
    )


def test_subject_pattern() -> None:
    err = _refused(WEB, subject=_subject("admin"))
    assert err.kind is ProblemKind.REJECTED_IDENTIFIER
    assert err.detail.startswith(f"{grants.Rule.SUBJECT}: ")
    _check(WEB, subject=_subject("web-42"))
    # The glob covers the CN's value only: no extra RDN rides along with a granted CN.
    extra = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Other Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, "web-42"),
        ]
    )
    assert _refused(WEB, subject=extra).detail.startswith(f"{grants.Rule.SUBJECT}: ")


def test_lifetime_cap_names_the_rule_only_when_the_grant_is_tighter() -> None:
    year = timedelta(days=365)
    assert grants.lifetime_cap(WEB, year) == (timedelta(days=90), grants.Rule.LIFETIME)
    assert grants.lifetime_cap(WEB, DAY) == (DAY, None)
    assert grants.lifetime_cap(grants.OPERATOR, year) == (year, None)


def test_narrow_never_widens() -> None:
    narrowed = grants.narrow(
        WEB,
        profiles=frozenset({"tls-server", "tls-client"}),
        dns_suffixes=("app.corp.internal", "other.internal"),
        max_lifetime=timedelta(days=365),
    )
    assert narrowed.profiles == frozenset({"tls-server"})
    assert narrowed.dns_suffixes == ("app.corp.internal",)
    assert narrowed.max_lifetime == timedelta(days=90)
    err = _refused(narrowed, x509.DNSName("b.corp.internal"))
    assert err.detail.startswith(f"{grants.Rule.DNS_SUFFIX}: ")
    _check(narrowed, x509.DNSName("x.app.corp.internal"))


def test_narrow_lifetime_shorter() -> None:
    assert grants.narrow(WEB, max_lifetime=DAY).max_lifetime == DAY


def test_narrow_subject_patterns() -> None:
    anyone = grants.Grant(profiles=frozenset({"device"}))
    assert grants.narrow(grants.OPERATOR, profiles=frozenset({"device"})).profiles == {"device"}
    assert grants.narrow(anyone, subject_patterns=("CN=a-*",)).subject_patterns == ("CN=a-*",)
    with pytest.raises(ValueError, match="not among"):
        grants.narrow(WEB, subject_patterns=("CN=a-*",))
    assert grants.narrow(WEB, subject_patterns=("CN=web-*",)).subject_patterns == ("CN=web-*",)
