"""Challenge validation (RFC 8555 §8): http-01, dns-01, tls-alpn-01 without a network."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.ca.acme import api as acme_api
from server.ca.acme import validation
from server.ca.acme.types import Identifier, IdentifierType
from server.ca.errors import ProblemKind


def ident(value: str) -> Identifier:
    return Identifier(IdentifierType.DNS, value)


def test_dns01_names_and_values() -> None:
    assert validation.dns01_name(ident("*.a.internal")) == "_acme-challenge.a.internal"
    # RFC 8555 §8.4 example shape: 43 base64url characters of SHA-256.
    value = validation.dns01_value("token.thumb")
    assert len(value) == 43
    assert "=" not in value


class Net:
    def __init__(self, body: bytes = b"", status: int = 200, fail: int = 0) -> None:
        self.body, self.status, self.fail, self.calls = body, status, fail, 0

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        self.calls += 1
        if self.calls <= self.fail:
            raise acme_api.NetworkError("connection", "refused")
        return acme_api.FetchResult(self.status, self.body)

    async def txt(self, name: str) -> Sequence[str]:
        raise acme_api.NetworkError("dns", "SERVFAIL")

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        await asyncio.sleep(10)
        return b""


def ports(net: Net) -> acme_api.ValidationPorts:
    return acme_api.ValidationPorts(http=net, dns=net, tls=net)


async def test_http01_retries_then_succeeds() -> None:
    net = Net(body=b"tok.thumb\n", fail=2)
    settings = validation.ValidationSettings(attempts=3, retry_delay=0)
    problem = await validation.validate(
        acme_api.ChallengeType.HTTP_01,
        ident("a.internal"),
        token="tok",
        thumbprint="thumb",
        ports=ports(net),
        settings=settings,
    )
    assert problem is None
    assert net.calls == 3


async def test_attempts_are_bounded_and_errors_typed() -> None:
    net = Net(fail=99)
    settings = validation.ValidationSettings(attempts=2, retry_delay=0, timeout=0.05)
    problem = await validation.validate(
        acme_api.ChallengeType.HTTP_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert problem is not None
    assert problem.kind is ProblemKind.CONNECTION
    assert net.calls == 2
    dns = await validation.validate(
        acme_api.ChallengeType.DNS_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert dns is not None
    assert dns.kind is ProblemKind.DNS
    slow = await validation.validate(
        acme_api.ChallengeType.TLS_ALPN_01,
        ident("a.internal"),
        token="t",
        thumbprint="x",
        ports=ports(net),
        settings=settings,
    )
    assert slow is not None
    assert slow.kind is ProblemKind.CONNECTION


class Failing:
    """Validation ports failing one way: refused, timed out, an HTTP status, a TLS alert."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def _fail(self) -> None:
        if self.how == "timeout":
            await asyncio.sleep(10)
        kind, _, detail = self.how.partition(":")
        raise acme_api.NetworkError(kind, detail)

    async def fetch(self, *, address: str, port: int, host: str, path: str) -> acme_api.FetchResult:
        if self.how.startswith("status:"):
            return acme_api.FetchResult(int(self.how.removeprefix("status:")), b"secret page")
        await self._fail()
        raise AssertionError

    async def txt(self, name: str) -> Sequence[str]:
        await self._fail()
        raise AssertionError

    async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
        await self._fail()
        raise AssertionError


FAILURES: dict[acme_api.ChallengeType, tuple[str, ...]] = {
    acme_api.ChallengeType.HTTP_01: (
        "connection:connection refused",
        "connection:no route to host",
        "timeout",
        "status:404",
        "status:500",
        "status:301",
        "tls:handshake failed",
    ),
    acme_api.ChallengeType.TLS_ALPN_01: (
        "connection:connection refused",
        "timeout",
        "tls:handshake failed",
        "tls:did not negotiate acme-tls/1",
    ),
    acme_api.ChallengeType.DNS_01: ("dns:SERVFAIL", "dns:REFUSED", "timeout"),
}


async def test_unreachable_targets_look_alike_to_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 13: refused vs timeout vs status vs TLS error made challenges a port scanner.
    settings = validation.ValidationSettings(attempts=1, retry_delay=0, timeout=0.05)
    caplog.set_level(logging.INFO, logger="server.ca.acme.validation")
    for kind, hows in FAILURES.items():
        seen = set()
        for how in hows:
            net = Failing(how)
            problem = await validation.validate(
                kind,
                ident("a.internal"),
                token="t",
                thumbprint="x",
                ports=acme_api.ValidationPorts(http=net, dns=net, tls=net),
                settings=settings,
            )
            assert problem is not None
            seen.add(problem)
            # The reason is kept for the operator.
            reason = "no answer" if how == "timeout" else how.partition(":")[2]
            assert reason in caplog.text, how
        assert len(seen) == 1, (kind, seen)
        (only,) = seen
        assert only.kind is (
            ProblemKind.DNS if kind is acme_api.ChallengeType.DNS_01 else ProblemKind.CONNECTION
        )
        assert "could not" in only.detail


def test_alpn_certificate_without_san_is_refused() -> None:
    assert validation.check_alpn_certificate(b"junk", ident("a.internal"), "k") is not None


def alpn_cert(sans: Sequence[x509.GeneralName], key_auth: str = "tok.thumb") -> bytes:
    """A real RFC 8737 challenge certificate: the given SANs, a critical acmeIdentifier."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(
                validation.ACME_IDENTIFIER_OID,
                b"\x04\x20" + hashlib.sha256(key_auth.encode()).digest(),
            ),
            critical=True,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


IP = Identifier(IdentifierType.IP, "10.0.0.7")


@pytest.mark.parametrize(
    ("identifier", "sans", "why"),
    [
        pytest.param(ident("a.internal"), [x509.DNSName("a.internal")], None, id="ok/dns"),
        pytest.param(ident("a.internal"), [x509.DNSName("A.Internal")], None, id="ok/dns-case"),
        pytest.param(IP, [x509.IPAddress(ipaddress.ip_address("10.0.0.7"))], None, id="ok/ip"),
        pytest.param(
            ident("a.internal"),
            [x509.DNSName("a.internal"), x509.DNSName("b.internal")],
            "exactly one subjectAltName",
            id="fail/two-sans",
        ),
        pytest.param(
            IP,
            [
                x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.8")),
            ],
            "exactly one subjectAltName",
            id="fail/two-ips",
        ),
        pytest.param(
            ident("a.internal"),
            [x509.DNSName("b.internal")],
            "does not name a.internal",
            id="fail/other-name",
        ),
        pytest.param(
            IP,
            [x509.IPAddress(ipaddress.ip_address("10.0.0.8"))],
            "does not name 10.0.0.7",
            id="fail/other-ip",
        ),
        pytest.param(
            IP, [x509.DNSName("10.0.0.7")], "does not name 10.0.0.7", id="fail/ip-as-dns-name"
        ),
        pytest.param(ident("a.internal"), [], "no usable subjectAltName", id="fail/no-san"),
    ],
)
async def test_alpn_certificate_must_name_exactly_the_identifier(
    identifier: Identifier, sans: list[x509.GeneralName], why: str | None
) -> None:
    # Issue 13: these checks could be deleted with every test green (junk bytes only).
    der = alpn_cert(sans)
    found = validation.check_alpn_certificate(der, identifier, "tok.thumb")
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found

    class Serves:
        async def probe(self, *, address: str, port: int, server_name: str) -> bytes:
            return der

    net = Net()
    problem = await validation.validate(
        acme_api.ChallengeType.TLS_ALPN_01,
        identifier,
        token="tok",
        thumbprint="thumb",
        ports=acme_api.ValidationPorts(http=net, dns=net, tls=Serves()),
        settings=validation.ValidationSettings(attempts=1, retry_delay=0, timeout=1),
    )
    if why is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.kind is ProblemKind.INCORRECT_RESPONSE
        assert why in problem.detail


async def test_denied_ip_targets_are_never_contacted() -> None:
    # Defence in depth behind newOrder's refusal: validation itself refuses to connect.
    net = Net(body=b"tok.thumb")
    for kind in (acme_api.ChallengeType.HTTP_01, acme_api.ChallengeType.TLS_ALPN_01):
        problem = await validation.validate(
            kind,
            Identifier(IdentifierType.IP, "169.254.169.254"),
            token="tok",
            thumbprint="thumb",
            ports=ports(net),
            settings=validation.ValidationSettings(attempts=1, retry_delay=0, timeout=1),
        )
        assert problem is not None
        assert problem.kind is ProblemKind.CONNECTION
        assert problem.detail == f"{kind}: the address is not a permitted validation target"
    assert net.calls == 0
