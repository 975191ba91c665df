"""Issuance grants: what a principal's label, directory or role lets it put in a certificate.

A ``Grant`` is data (built from the TOML file, CLI flags or the admin API) and
denies by default: an empty grant allows no profile and no subjectAltName. The
issuance pipeline calls ``check`` before anything is built; a refusal names the
rule that refused (``Rule``) so operators can see which line of policy to change.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Final

from cryptography import x509

from server.ca import subjects
from server.ca.errors import EngineError, ProblemKind, SubProblem
from server.ca.profiles import SanType

__all__ = [
    "ANY",
    "DEVICE_IDENTITY",
    "OPERATOR",
    "Grant",
    "Rule",
    "authorize",
    "check",
    "lifetime_cap",
    "narrow",
]

ANY: Final = "*"
"""In ``profiles``, ``cas``, ``dns_suffixes``, ``email_domains``: every value of that kind."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Rule(StrEnum):
    """The policy rule behind a refusal; it appears in the error detail."""

    CA = "grant.ca"
    PROFILE = "grant.profile"
    SAN_TYPE = "grant.san-type"
    DNS_SUFFIX = "grant.dns-suffix"
    WILDCARD = "grant.wildcard"
    IP_RANGE = "grant.ip-range"
    EMAIL_DOMAIN = "grant.email-domain"
    URI_PATTERN = "grant.uri-pattern"
    SUBJECT = "grant.subject"
    LIFETIME = "grant.max-lifetime"


@dataclass(frozen=True, slots=True)
class Grant:
    """What may be issued; every empty field grants nothing of its kind.

    ``dns_suffixes``/``ip_ranges``/``email_domains``/``uri_patterns`` grant the
    SAN type they name; ``subject_patterns`` are shell-style patterns over the
    RFC 4514 subject string (``CN=fire-sensor-*``); an empty tuple means any
    subject. ``max_lifetime`` None means the profile's own limit. ``cas`` names
    the CAs (by name) whose subtrees the grant covers. ``ANY`` in ``profiles``,
    ``cas``, ``dns_suffixes`` or ``email_domains`` grants every value of that kind.
    """

    cas: frozenset[str] = frozenset()
    profiles: frozenset[str] = frozenset()
    dns_suffixes: tuple[str, ...] = ()
    allow_wildcard: bool = False
    ip_ranges: tuple[IpNetwork, ...] = ()
    email_domains: tuple[str, ...] = ()
    uri_patterns: tuple[str, ...] = ()
    subject_patterns: tuple[str, ...] = ()
    max_lifetime: timedelta | None = None

    @property
    def san_types(self) -> frozenset[SanType]:
        """The subjectAltName types this grant allows at all."""
        granted = {
            SanType.DNS: self.dns_suffixes,
            SanType.IP: self.ip_ranges,
            SanType.EMAIL: self.email_domains,
            SanType.URI: self.uri_patterns,
        }
        return frozenset(kind for kind, values in granted.items() if values)


DEVICE_IDENTITY = Grant(cas=frozenset({ANY}), profiles=frozenset({"device"}))
"""The default EST label grant: device identities (a subject name, no SANs).

The label binds the CA; ``cas`` is narrowed to it where the label is resolved.
"""

OPERATOR = Grant(
    cas=frozenset({ANY}),
    profiles=frozenset({ANY}),
    dns_suffixes=(ANY,),
    allow_wildcard=True,
    ip_ranges=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
    email_domains=(ANY,),
    uri_patterns=(ANY,),
)
"""Break-glass operator at the CLI (a shell on the database host): every CA and name."""


def _dns_under(name: str, suffix: str) -> bool:
    if suffix == ANY:
        return True
    suffix = suffix.lower().strip(".")
    return name == suffix or name.endswith("." + suffix)


def _refusal(grant: Grant, name: x509.GeneralName) -> tuple[Rule, str] | None:
    value = str(name.value)
    if isinstance(name, x509.DNSName):
        bare = value[2:] if value.startswith("*.") else value
        if not grant.dns_suffixes:
            return Rule.SAN_TYPE, "DNS names are not granted"
        if bare != value and not grant.allow_wildcard:
            return Rule.WILDCARD, f"wildcard {value} is not granted"
        if not any(_dns_under(bare.lower(), s) for s in grant.dns_suffixes):
            return Rule.DNS_SUFFIX, f"{value} is outside {', '.join(grant.dns_suffixes)}"
        return None
    if isinstance(name, x509.IPAddress):
        addr = name.value
        if not grant.ip_ranges:
            return Rule.SAN_TYPE, "IP addresses are not granted"
        if not any(
            isinstance(addr, type(net.network_address)) and addr in net for net in grant.ip_ranges
        ):
            ranges = ", ".join(str(n) for n in grant.ip_ranges)
            return Rule.IP_RANGE, f"{value} is outside {ranges}"
        return None
    if isinstance(name, x509.RFC822Name):
        if not grant.email_domains:
            return Rule.SAN_TYPE, "e-mail addresses are not granted"
        domain = value.rpartition("@")[2].lower()
        if not any(d == ANY or domain == d.lower() for d in grant.email_domains):
            return Rule.EMAIL_DOMAIN, f"{value} is outside {', '.join(grant.email_domains)}"
        return None
    if isinstance(name, x509.UniformResourceIdentifier):
        if not grant.uri_patterns:
            return Rule.SAN_TYPE, "URIs are not granted"
        if not any(fnmatch.fnmatchcase(value, p) for p in grant.uri_patterns):
            return Rule.URI_PATTERN, f"{value} matches none of {', '.join(grant.uri_patterns)}"
        return None
    return Rule.SAN_TYPE, f"{type(name).__name__} names are not granted"


def authorize(grant: Grant, *, lineage: Sequence[str], profile: str) -> None:
    """Refuse a CA or profile the grant does not cover.

    ``lineage`` is the issuing CA's name followed by its ancestors' names: a grant
    of a CA covers its subtree.

    Raises:
        EngineError: UNAUTHORIZED for a CA outside the grant, INVALID_PROFILE for an
            ungranted profile. Each detail starts with the rule's name.
    """
    if ANY not in grant.cas and not any(name in grant.cas for name in lineage):
        where = lineage[0] if lineage else "?"
        raise EngineError(ProblemKind.UNAUTHORIZED, f"{Rule.CA}: CA {where} is not granted")
    if ANY not in grant.profiles and profile not in grant.profiles:
        raise EngineError(ProblemKind.INVALID_PROFILE, f"{Rule.PROFILE}: {profile} is not granted")


def lifetime_cap(grant: Grant, limit: timedelta) -> tuple[timedelta, str | None]:
    """Return the lifetime limit under ``grant`` and the rule's name when the grant set it."""
    if grant.max_lifetime is not None and grant.max_lifetime < limit:
        return grant.max_lifetime, str(Rule.LIFETIME)
    return limit, None


def check(
    grant: Grant,
    *,
    subject: x509.Name,
    names: Sequence[x509.GeneralName],
) -> None:
    """Refuse names or a subject the grant does not allow.

    Raises:
        EngineError: REJECTED_IDENTIFIER (one subproblem per name) for ungranted
            names or subject. Each detail starts with the rule's name.
    """
    problems = []
    for name in names:
        refused = _refusal(grant, name)
        if refused is not None:
            rule, why = refused
            problems.append(
                SubProblem(ProblemKind.REJECTED_IDENTIFIER, f"{rule}: {why}", str(name.value))
            )
    if problems:
        detail = problems[0].detail if len(problems) == 1 else f"{len(problems)} names refused"
        raise EngineError(ProblemKind.REJECTED_IDENTIFIER, detail, subproblems=tuple(problems))
    if grant.subject_patterns and not subjects.matches(grant.subject_patterns, subject):
        rendered = subject.rfc4514_string()
        patterns = ", ".join(grant.subject_patterns)
        raise EngineError(
            ProblemKind.REJECTED_IDENTIFIER,
            f"{Rule.SUBJECT}: {rendered!r} matches none of {patterns}",
        )


def _narrow_subjects(outer: tuple[str, ...], inner: tuple[str, ...] | None) -> tuple[str, ...]:
    if inner is None:
        return outer
    if not outer:
        return inner
    kept = tuple(p for p in inner if p in outer)
    if not kept:
        # An empty tuple grants any subject: refuse rather than widen.
        raise ValueError(f"subject patterns {inner} are not among the label's {outer}")
    return kept


def _narrow_profiles(outer: frozenset[str], inner: frozenset[str] | None) -> frozenset[str]:
    if inner is None:
        return outer
    return inner if ANY in outer else outer & inner


def narrow(
    grant: Grant,
    *,
    profiles: frozenset[str] | None = None,
    dns_suffixes: tuple[str, ...] | None = None,
    subject_patterns: tuple[str, ...] | None = None,
    max_lifetime: timedelta | None = None,
) -> Grant:
    """Return ``grant`` restricted for one account: never more than the label grants.

    A narrowing DNS suffix is kept when it lies under one the label grants.

    Raises:
        ValueError: subject patterns none of which the label grants.
    """
    suffixes = grant.dns_suffixes
    if dns_suffixes is not None:
        suffixes = tuple(
            s for s in dns_suffixes if any(_dns_under(s.lower(), o) for o in grant.dns_suffixes)
        )
    lifetime = grant.max_lifetime
    if max_lifetime is not None:
        lifetime = max_lifetime if lifetime is None else min(lifetime, max_lifetime)
    return replace(
        grant,
        profiles=_narrow_profiles(grant.profiles, profiles),
        dns_suffixes=suffixes,
        subject_patterns=_narrow_subjects(grant.subject_patterns, subject_patterns),
        max_lifetime=lifetime,
    )
