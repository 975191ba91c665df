"""The checks every certificate privca signs passes, in one order, before anything is built.

``authorize`` answers "may this principal use this CA and profile at all" (the
grant's CA scope and profiles, then the state of the CA and every CA above it);
``check_request`` answers "may this request be signed" (CA kind, key rules,
profile and CA name policy, the grant's names and subject, name constraints of
the chain, the lifetime limit). ``CAEngine`` resolves the CA, its ancestors and
the chain's constraints and calls these; front ends that must refuse early (ACME
newOrder, EST before holding a request for approval) call the engine's
``check_request`` which runs the same code. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.ca import grants, issuance, keys, policy, profiles
from server.ca.errors import EngineError, ProblemKind
from server.ca.types import CA, CAKind, CAMode, CAStatus

__all__ = [
    "Approved",
    "Rule",
    "authorize",
    "check_ca_state",
    "check_request",
    "check_status_signer",
]


class Rule(StrEnum):
    """Pipeline rules outside the grant (those are ``grants.Rule``); named in refusals."""

    CA_STATE = "ca.state"
    CA_EXPIRED = "ca.expired"
    CA_ANCESTOR = "ca.ancestor-revoked"
    CA_KIND = "ca.kind"
    KEY = "profile.key"
    SUBJECT = "request.subject"


@dataclass(frozen=True, slots=True)
class Approved:
    """A request that passed every check: what the builder may put in the certificate."""

    ca: CA
    profile: profiles.Profile
    subject: x509.Name
    names: tuple[x509.GeneralName, ...]
    max_lifetime: timedelta
    limit: str


def check_ca_state(lineage: Sequence[CA], now: datetime) -> None:
    """Refuse a CA that is not active or expired, or one under a revoked or expired CA.

    ``lineage`` is the issuing CA followed by its ancestors. A disabled ancestor
    does not stop its subtree (an offline root is disabled); a revoked one does.

    Raises:
        EngineError: POLICY naming the rule.
    """
    ca = lineage[0]
    if ca.status is not CAStatus.ACTIVE or ca.cert_der is None:
        raise EngineError(ProblemKind.POLICY, f"{Rule.CA_STATE}: CA {ca.name} is {ca.status}")
    for above in lineage:
        if above.cert_der is not None and above.certificate.not_valid_after_utc <= now:
            raise EngineError(ProblemKind.POLICY, f"{Rule.CA_EXPIRED}: CA {above.name} expired")
    for above in lineage[1:]:
        if above.status is CAStatus.REVOKED:
            raise EngineError(
                ProblemKind.POLICY,
                f"{Rule.CA_ANCESTOR}: CA {ca.name} is under revoked CA {above.name}",
            )


def check_status_signer(lineage: Sequence[CA], now: datetime) -> None:
    """Refuse a delegated OCSP signer for a CA without a valid certificate.

    Unlike issuance this allows disabled and revoked CAs: they keep publishing
    status for the certificates they issued.

    Raises:
        EngineError: POLICY (``ca.state``, ``ca.expired``).
    """
    ca = lineage[0]
    # A pending import is the only state without a certificate (``activate_import``
    # sets both), so this refuses it too.
    if ca.cert_der is None:
        raise EngineError(ProblemKind.POLICY, f"{Rule.CA_STATE}: CA {ca.name} is {ca.status}")
    if ca.certificate.not_valid_after_utc <= now:
        raise EngineError(ProblemKind.POLICY, f"{Rule.CA_EXPIRED}: CA {ca.name} expired")


def authorize(grant: grants.Grant, lineage: Sequence[CA], *, profile: str, now: datetime) -> None:
    """Refuse a CA or profile outside ``grant``, then a CA that may not issue now.

    Raises:
        EngineError: UNAUTHORIZED/INVALID_PROFILE (``grant.*``), POLICY (``ca.*``).
    """
    grants.authorize(grant, lineage=tuple(ca.name for ca in lineage), profile=profile)
    check_ca_state(lineage, now)


def check_request(
    grant: grants.Grant,
    ca: CA,
    *,
    profile: profiles.Profile,
    names: Sequence[x509.GeneralName],
    subject: x509.Name,
    public_key: PublicKeyTypes | None,
    constraints: Sequence[x509.NameConstraints],
) -> Approved:
    """Check a leaf request against the CA, the profile, the grant and the chain.

    ``public_key`` None checks names only (an ACME order before its CSR exists).

    Raises:
        EngineError: POLICY (CA kind), BAD_PUBLIC_KEY, REJECTED_IDENTIFIER (profile,
            CA or grant name rules, name constraints, subject pattern), BAD_CSR.
    """
    # The admin CA issues admin client certificates only, and only it issues them: an
    # ACME directory or EST label naming either gets nothing (rule ``ca.kind``).
    admin_pair = ca.kind is CAKind.ADMIN and profile.name == profiles.ADMIN_CLIENT.name
    if ca.kind is not CAKind.GENERAL and not admin_pair:
        raise EngineError(
            ProblemKind.POLICY,
            f"{Rule.CA_KIND}: CA {ca.name} ({ca.kind}) cannot issue {profile.name}",
        )
    if ca.kind is CAKind.GENERAL and profile.name == profiles.ADMIN_CLIENT.name:
        raise EngineError(
            ProblemKind.POLICY,
            f"{Rule.CA_KIND}: only the admin CA issues {profile.name} certificates",
        )
    if public_key is not None:
        alg = keys.algorithm_of(public_key)
        if alg not in profile.allowed_key_algorithms:
            raise EngineError(
                ProblemKind.BAD_PUBLIC_KEY,
                f"{Rule.KEY}: profile {profile.name} does not allow {alg} keys",
            )
    policy.check_names(
        names,
        profile=profile,
        dns_suffixes=ca.allowed_dns_suffixes,
        ip_networks=ca.allowed_ip_networks,
    )
    leaf_subject = issuance.leaf_subject(profile, subject, names)
    grants.check(grant, subject=leaf_subject, names=names)
    if len(leaf_subject) == 0 and not names:
        raise EngineError(
            ProblemKind.BAD_CSR, f"{Rule.SUBJECT}: the request names no subject and no SAN"
        )
    policy.check_name_constraints(names, constraints)
    limit = profile.max_lifetime
    limit_name = f"profile {profile.name}"
    if ca.mode is CAMode.SHORT_LIVED and limit > profiles.SHORT_LIVED_MAX:
        limit, limit_name = profiles.SHORT_LIVED_MAX, f"short-lived CA {ca.name}"
    limit, rule = grants.lifetime_cap(grant, limit)
    return Approved(
        ca=ca,
        profile=profile,
        subject=leaf_subject,
        names=tuple(names),
        max_lifetime=limit,
        limit=rule or limit_name,
    )
