"""Certificate profiles (templates): what a leaf may contain and for how long.

A profile fixes key usage, extended key usage, allowed SAN types, allowed key
types and the maximum lifetime; a request may narrow these, never widen them.
Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from server.ca.errors import EngineError, ProblemKind
from server.ca.types import KeyAlgorithm

__all__ = [
    "ADMIN_CLIENT",
    "BUILTIN_PROFILES",
    "SHORT_LIVED_MAX",
    "Profile",
    "SanType",
    "get_profile",
]

SHORT_LIVED_MAX: Final = timedelta(days=7)


class SanType(StrEnum):
    """subjectAltName kinds privca issues."""

    DNS = "dns"
    IP = "ip"
    URI = "uri"
    EMAIL = "email"


_ALL_KEYS: Final = frozenset(KeyAlgorithm)


@dataclass(frozen=True, slots=True)
class Profile:
    """A leaf certificate template."""

    name: str
    description: str
    extended_key_usages: tuple[ObjectIdentifier, ...]
    allowed_san_types: frozenset[SanType]
    max_lifetime: timedelta
    default_lifetime: timedelta
    allowed_key_algorithms: frozenset[KeyAlgorithm] = _ALL_KEYS
    # True: keep the CSR's subject (device names such as CN=fire-sensor-123).
    # False: the subject is CN=<first SAN> as Web PKI clients expect.
    keep_subject: bool = False
    require_san: bool = True
    # keyEncipherment for RSA keys (TLS 1.2 RSA key exchange); never for other keys.
    rsa_key_encipherment: bool = True


BUILTIN_PROFILES: Final[Mapping[str, Profile]] = {
    p.name: p
    for p in (
        Profile(
            name="tls-server",
            description="TLS server certificates (DNS and IP names)",
            extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            allowed_san_types=frozenset({SanType.DNS, SanType.IP}),
            max_lifetime=timedelta(days=398),
            default_lifetime=timedelta(days=90),
        ),
        Profile(
            name="tls-client",
            description="TLS client certificates for users and services",
            extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            allowed_san_types=frozenset(SanType),
            max_lifetime=timedelta(days=398),
            default_lifetime=timedelta(days=90),
            keep_subject=True,
            require_san=False,
            rsa_key_encipherment=False,
        ),
        Profile(
            name="device",
            description="IoT device identity (free-form subject, client and server auth)",
            extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
            allowed_san_types=frozenset(SanType),
            max_lifetime=timedelta(days=3 * 365),
            default_lifetime=timedelta(days=365),
            keep_subject=True,
            require_san=False,
        ),
        Profile(
            name="short-lived",
            description="Short-lived TLS certificates (at most 7 days), renewed not revoked",
            extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            allowed_san_types=frozenset({SanType.DNS, SanType.IP}),
            max_lifetime=SHORT_LIVED_MAX,
            default_lifetime=timedelta(hours=24),
        ),
    )
}


ADMIN_CLIENT: Final = Profile(
    name="admin-client",
    description="Admin API client certificates (issued only by the internal admin CA)",
    extended_key_usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    allowed_san_types=frozenset(),
    max_lifetime=timedelta(days=398),
    default_lifetime=timedelta(days=90),
    allowed_key_algorithms=frozenset({KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384}),
    keep_subject=True,
    require_san=False,
    rsa_key_encipherment=False,
)
"""Not configurable and not among ``BUILTIN_PROFILES``: the pipeline ties it to CAs of kind
``admin`` and those CAs to it (``pipeline.check_request``)."""


def get_profile(name: str) -> Profile:
    """Return a built-in profile.

    Raises:
        EngineError: INVALID_PROFILE for an unknown name.
    """
    try:
        return BUILTIN_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise EngineError(
            ProblemKind.INVALID_PROFILE, f"unknown profile {name!r} (known: {known})"
        ) from None
