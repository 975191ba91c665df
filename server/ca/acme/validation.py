"""Challenge validation: http-01, dns-01 (RFC 8555 §8.3-8.4), tls-alpn-01 (RFC 8737).

Network I/O goes through the injected ports of ``acme_ports``; every attempt
sits inside ``asyncio.timeout`` and attempts are bounded. Returns a
``StoredProblem`` for the challenge ``error`` or None on success.
Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from server.ca.acme import types as at
from server.ca.acme.ports import HttpFetcher, NetworkError, TlsAlpnProber, TxtResolver
from server.ca.errors import ProblemKind

__all__ = [
    "ACME_IDENTIFIER_OID",
    "ValidationPorts",
    "ValidationSettings",
    "dns01_name",
    "dns01_value",
    "key_authorization",
    "validate",
]

log = logging.getLogger(__name__)

ACME_IDENTIFIER_OID: Final = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_HTTP01_PATH: Final = "/.well-known/acme-challenge/"
# What the client sees when the target could not be reached, per challenge type.
# Refused, timed out, an HTTP status, a TLS alert or a resolver failure all read
# the same (the reason goes to the log): otherwise a challenge is a port scanner
# for the networks the validator can reach.
_UNREACHABLE: Final[dict[at.ChallengeType, at.StoredProblem]] = {
    at.ChallengeType.HTTP_01: at.StoredProblem(
        ProblemKind.CONNECTION, "http-01: could not fetch the http-01 response from the target"
    ),
    at.ChallengeType.TLS_ALPN_01: at.StoredProblem(
        ProblemKind.CONNECTION,
        "tls-alpn-01: could not get an acme-tls/1 certificate from the target",
    ),
    at.ChallengeType.DNS_01: at.StoredProblem(
        ProblemKind.DNS, "dns-01: could not look up the TXT record"
    ),
}


class _UnreachableError(Exception):
    """The target did not give a usable answer; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_TARGETS: Final[tuple[IpNetwork, ...]] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # unspecified / "this network"
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services
        "224.0.0.0/4",  # multicast
        "255.255.255.255/32",  # broadcast
        "::/128",  # unspecified
        "::1/128",  # loopback
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)
"""Where validation never connects unless allowed (private ranges stay allowed)."""


@dataclass(frozen=True, slots=True)
class ValidationSettings:
    """Where and how long to look (private networks and tests override ports/addresses).

    ``allow_targets`` re-opens parts of ``DENIED_TARGETS``; the address named by
    ``resolve_all_to`` (test set-ups) is always allowed.
    """

    http01_port: int = 80
    tlsalpn01_port: int = 443
    resolve_all_to: str | None = None
    allow_targets: tuple[IpNetwork, ...] = ()
    timeout: float = 10.0
    attempts: int = 3
    retry_delay: float = 0.5


@dataclass(frozen=True, slots=True)
class ValidationPorts:
    """The network as the validator sees it."""

    http: HttpFetcher
    dns: TxtResolver
    tls: TlsAlpnProber


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_authorization(token: str, thumbprint: str) -> str:
    """Return ``token || '.' || thumbprint`` (RFC 8555 §8.1)."""
    return f"{token}.{thumbprint}"


def dns01_name(identifier: at.Identifier) -> str:
    """Return the TXT record name for a dns-01 challenge (wildcard prefix removed)."""
    value = identifier.value.removeprefix("*.")
    return f"_acme-challenge.{value}"


def dns01_value(key_auth: str) -> str:
    """Return the TXT value for a dns-01 challenge."""
    return _b64u(hashlib.sha256(key_auth.encode()).digest())


def target_permitted(address: str, settings: ValidationSettings) -> bool:
    """Return whether validation may connect to ``address`` (an IP literal).

    Anything that is not an IP address is refused: callers resolve names first.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if settings.resolve_all_to and ip == ipaddress.ip_address(settings.resolve_all_to):
        return True
    if any(ip.version == n.version and ip in n for n in settings.allow_targets):
        return True
    return not any(ip.version == n.version and ip in n for n in DENIED_TARGETS)


def is_ip_literal(value: str) -> bool:
    """Return whether ``value`` is an IP address (brackets allowed), not a name."""
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def _address(identifier: at.Identifier, settings: ValidationSettings) -> str:
    if settings.resolve_all_to:
        return settings.resolve_all_to
    return identifier.value


def _reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


async def _http01(
    identifier: at.Identifier,
    token: str,
    key_auth: str,
    ports: ValidationPorts,
    s: ValidationSettings,
) -> at.StoredProblem | None:
    host = identifier.value
    if identifier.type is at.IdentifierType.IP and ":" in host:
        host = f"[{host}]"
    result = await ports.http.fetch(
        address=_address(identifier, s), port=s.http01_port, host=host, path=_HTTP01_PATH + token
    )
    if result.status != 200:
        raise _UnreachableError(f"HTTP {result.status}")
    if result.body.strip().decode("utf-8", "replace") != key_auth:
        return at.StoredProblem(
            ProblemKind.INCORRECT_RESPONSE,
            f"http-01: {identifier.value} served the wrong key authorization",
        )
    return None


async def _dns01(
    identifier: at.Identifier, key_auth: str, ports: ValidationPorts
) -> at.StoredProblem | None:
    name = dns01_name(identifier)
    records = await ports.dns.txt(name)
    if dns01_value(key_auth) in records:
        return None
    if not records:
        return at.StoredProblem(ProblemKind.DNS, f"dns-01: no TXT record at {name}")
    return at.StoredProblem(
        ProblemKind.INCORRECT_RESPONSE, f"dns-01: no TXT record at {name} has the expected value"
    )


def check_alpn_certificate(der: bytes, identifier: at.Identifier, key_auth: str) -> str | None:
    """Return why a tls-alpn-01 certificate is wrong, None when it is right (RFC 8737 §3)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (ValueError, x509.ExtensionNotFound):
        return "the certificate has no usable subjectAltName"
    if len(sans) != 1:
        return "the certificate must name exactly one subjectAltName"
    only = sans[0]
    if identifier.type is at.IdentifierType.IP:
        ok = isinstance(only, x509.IPAddress) and only.value == ipaddress.ip_address(
            identifier.value
        )
    else:
        ok = isinstance(only, x509.DNSName) and only.value.lower() == identifier.value
    if not ok:
        return f"the certificate does not name {identifier.value}"
    try:
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        return "the certificate has no acmeIdentifier extension"
    if not ext.critical:
        return "the acmeIdentifier extension must be critical"
    digest = hashlib.sha256(key_auth.encode()).digest()
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if raw != b"\x04\x20" + digest:
        return "the acmeIdentifier extension has the wrong value"
    return None


async def _tlsalpn01(
    identifier: at.Identifier, key_auth: str, ports: ValidationPorts, s: ValidationSettings
) -> at.StoredProblem | None:
    sni = (
        _reverse_name(identifier.value)
        if identifier.type is at.IdentifierType.IP
        else identifier.value
    )
    der = await ports.tls.probe(
        address=_address(identifier, s), port=s.tlsalpn01_port, server_name=sni
    )
    why = check_alpn_certificate(der, identifier, key_auth)
    if why is None:
        return None
    return at.StoredProblem(ProblemKind.INCORRECT_RESPONSE, f"tls-alpn-01: {why}")


async def _once(
    kind: at.ChallengeType,
    identifier: at.Identifier,
    token: str,
    key_auth: str,
    ports: ValidationPorts,
    s: ValidationSettings,
) -> at.StoredProblem | None:
    target = _address(identifier, s)
    if (
        kind is not at.ChallengeType.DNS_01
        and is_ip_literal(target)
        and not target_permitted(target, s)
    ):
        return at.StoredProblem(
            ProblemKind.CONNECTION, f"{kind}: the address is not a permitted validation target"
        )
    try:
        async with asyncio.timeout(s.timeout):
            if kind is at.ChallengeType.HTTP_01:
                return await _http01(identifier, token, key_auth, ports, s)
            if kind is at.ChallengeType.DNS_01:
                return await _dns01(identifier, key_auth, ports)
            return await _tlsalpn01(identifier, key_auth, ports, s)
    except NetworkError as exc:
        reason = f"{exc.kind}: {exc.detail}"
    except TimeoutError:
        reason = f"no answer in {s.timeout:g}s"
    except _UnreachableError as exc:
        reason = exc.reason
    log.info("%s validation of %s failed: %s", kind, identifier, reason)
    return _UNREACHABLE[kind]


async def validate(
    kind: at.ChallengeType,
    identifier: at.Identifier,
    *,
    token: str,
    thumbprint: str,
    ports: ValidationPorts,
    settings: ValidationSettings,
) -> at.StoredProblem | None:
    """Validate one challenge with bounded retries; None on success.

    Each attempt has ``settings.timeout`` seconds; failures are retried up to
    ``settings.attempts`` times (a client may still be setting up its answer).
    """
    key_auth = key_authorization(token, thumbprint)
    problem: at.StoredProblem | None = None
    for attempt in range(max(1, settings.attempts)):
        if attempt:
            await asyncio.sleep(settings.retry_delay * attempt)
        problem = await _once(kind, identifier, token, key_auth, ports, settings)
        if problem is None:
            return None
    return problem
