"""Identifier policy: which names a CA may put in certificates.

Pure functions over the CA's allowed DNS suffixes and IP networks; every
protocol goes through ``check_names`` so the rules are the same everywhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509

from server.ca.errors import EngineError, ProblemKind, SubProblem
from server.ca.profiles import Profile, SanType

__all__ = [
    "check_name_constraints",
    "check_names",
    "is_valid_dns_name",
    "san_type",
    "san_value",
]

_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_DNS_LEN: Final = 253


def is_valid_dns_name(name: str, *, allow_wildcard: bool = True) -> bool:
    """Return True for a syntactically valid lower-case DNS name (optionally ``*.`` prefixed)."""
    if allow_wildcard and name.startswith("*."):
        name = name[2:]
    if not name or len(name) > _MAX_DNS_LEN or name.endswith("."):
        return False
    labels = name.split(".")
    if len(labels) < 2:
        # Single-label names (e.g. "localhost") are allowed on a private network.
        return bool(_LABEL.match(name))
    return all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def san_type(name: x509.GeneralName) -> SanType | None:
    """Return the SanType of a GeneralName, None for kinds privca never issues."""
    if isinstance(name, x509.DNSName):
        return SanType.DNS
    if isinstance(name, x509.IPAddress):
        return SanType.IP
    if isinstance(name, x509.UniformResourceIdentifier):
        return SanType.URI
    if isinstance(name, x509.RFC822Name):
        return SanType.EMAIL
    return None


def san_value(name: x509.GeneralName) -> str:
    """Return a GeneralName as ``type:value`` for storage and search."""
    kind = san_type(name)
    return f"{kind or 'other'}:{name.value}"


def _is_uri_with_host(value: str) -> bool:
    # RFC 5280 §4.2.1.6: absolute URI; when it has an authority the host is a
    # FQDN or IP. Divergence: privca also requires the authority, so URN-style
    # values are refused (validators such as pkilint reject them).
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.hostname) and " " not in value


def _in_suffixes(dns: str, suffixes: Sequence[str]) -> bool:
    bare = dns[2:] if dns.startswith("*.") else dns
    for suffix in suffixes:
        s = suffix.lower().lstrip(".")
        if bare == s or bare.endswith("." + s):
            return True
    return False


def _check_one(
    name: x509.GeneralName,
    profile: Profile,
    dns_suffixes: Sequence[str],
    ip_networks: Sequence[str],
) -> str | None:
    kind = san_type(name)
    if kind is None or kind not in profile.allowed_san_types:
        return f"profile {profile.name} does not allow {kind or 'this kind of'} names"
    if kind is SanType.DNS:
        value = str(name.value)
        if value != value.lower() or not is_valid_dns_name(value):
            return f"{value!r} is not a valid lower-case DNS name"
        if dns_suffixes and not _in_suffixes(value, dns_suffixes):
            return f"{value} is outside the allowed DNS suffixes ({', '.join(dns_suffixes)})"
    elif kind is SanType.IP and ip_networks:
        addr = name.value
        nets = [ipaddress.ip_network(n, strict=False) for n in ip_networks]
        if not any(addr.version == n.version and addr in n for n in nets):
            return f"{addr} is outside the allowed IP ranges ({', '.join(ip_networks)})"
    elif kind is SanType.EMAIL and "@" not in str(name.value):
        return f"{name.value!r} is not an email address"
    elif kind is SanType.URI and not _is_uri_with_host(str(name.value)):
        return f"{name.value!r} is not an absolute URI with a host (scheme://host/...)"
    return None


def check_names(
    names: Sequence[x509.GeneralName],
    *,
    profile: Profile,
    dns_suffixes: Sequence[str] = (),
    ip_networks: Sequence[str] = (),
) -> None:
    """Check every SAN against the profile and the CA's identifier policy.

    Raises:
        EngineError: REJECTED_IDENTIFIER with one subproblem per refused name.
    """
    problems = []
    for name in names:
        reason = _check_one(name, profile, dns_suffixes, ip_networks)
        if reason is not None:
            problems.append(
                SubProblem(ProblemKind.REJECTED_IDENTIFIER, reason, identifier=san_value(name))
            )
    if problems:
        detail = problems[0].detail if len(problems) == 1 else f"{len(problems)} names refused"
        raise EngineError(ProblemKind.REJECTED_IDENTIFIER, detail, subproblems=tuple(problems))
    if profile.require_san and not names:
        raise EngineError(
            ProblemKind.BAD_CSR, f"profile {profile.name} requires at least one subjectAltName"
        )


def _dns_within(name: str, base: str) -> bool:
    bare = name[2:] if name.startswith("*.") else name
    base = base.lower().lstrip(".")
    return bare == base or bare.endswith("." + base)


def _within(name: x509.GeneralName, subtree: x509.GeneralName) -> bool | None:
    """True/False when the subtree applies to the name's type, None otherwise."""
    if isinstance(name, x509.DNSName) and isinstance(subtree, x509.DNSName):
        return _dns_within(name.value, subtree.value)
    if isinstance(name, x509.IPAddress) and isinstance(subtree, x509.IPAddress):
        net = subtree.value
        addr = name.value
        return (
            isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network))
            and addr.version == net.version
            and addr in net
        )
    return None


def check_name_constraints(
    names: Sequence[x509.GeneralName], constraints: Sequence[x509.NameConstraints]
) -> None:
    """Refuse names that the issuing chain's name constraints exclude (RFC 5280 §4.2.1.10).

    A CA never issues what validators would reject, so the engine checks first.

    Raises:
        EngineError: REJECTED_IDENTIFIER naming each refused name.
    """
    problems = []
    for name in names:
        for nc in constraints:
            excluded = any(_within(name, t) for t in nc.excluded_subtrees or [])
            verdicts = [_within(name, t) for t in nc.permitted_subtrees or []]
            applicable = [v for v in verdicts if v is not None]
            if excluded or (applicable and not any(applicable)):
                problems.append(
                    SubProblem(
                        ProblemKind.REJECTED_IDENTIFIER,
                        f"{name.value} violates the CA's name constraints",
                        identifier=san_value(name),
                    )
                )
                break
    if problems:
        raise EngineError(
            ProblemKind.REJECTED_IDENTIFIER, problems[0].detail, subproblems=tuple(problems)
        )
