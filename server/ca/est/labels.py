"""EST labels (RFC 7030 §3.2.2): which CA and profile a path serves and how clients log in.

Owns label names, the built-in default label, labels from the config file over
stored ones (cached briefly), their validation and their client-certificate
trust anchors. Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

from cryptography import x509

from server.ca import grants, subjects
from server.ca.api import CAEngine
from server.ca.errors import EngineError, ProblemKind
from server.ca.est.ports import EstLabel, EstRepository
from server.ca.ports import Clock
from server.ca.types import AuditEvent, Principal

__all__ = [
    "DEFAULT_LABEL",
    "Labels",
    "is_valid_label_name",
    "label_json",
    "narrow_for_account",
    "parse_trust_anchors",
    "policy_summary",
]

DEFAULT_LABEL: Final = "default"
# Path segments of the operations themselves can never be label names (RFC 7030 §3.2.2).
_RESERVED: Final = frozenset(
    {"cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "fullcmc"}
)
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A dotted OID as csrattrs carries it: no leading zeros, signs or spaces (X.660).
_OID_RE: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]{0,19})){1,63}$")
_LABEL_TTL: Final = 5.0
_CACHE_MAX: Final = 1000


def is_valid_label_name(name: str) -> bool:
    """Return True for a usable label name (not an operation name)."""
    return bool(_LABEL_RE.match(name)) and name not in _RESERVED


def parse_trust_anchors(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse PEM trust anchors.

    Raises:
        EngineError: MALFORMED when the PEM holds no certificate or does not parse.
    """
    if not pem.strip():
        return ()
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise EngineError(ProblemKind.MALFORMED, "trust anchors are not PEM certificates") from exc
    return tuple(certs)


def _check_policy(label: EstLabel) -> None:
    """Refuse a name policy that cannot mean what it says.

    Raises:
        EngineError: MALFORMED.
    """
    for kind, values in (
        ("DNS suffix", label.dns_suffixes),
        ("URI pattern", label.uri_patterns),
        ("e-mail domain", label.email_domains),
        ("subject pattern", label.subject_patterns),
    ):
        if any(not v.strip() or v != v.strip() for v in values):
            raise EngineError(ProblemKind.MALFORMED, f"label {label.name}: an empty {kind}")
    for pattern in label.subject_patterns:
        try:
            subjects.check_pattern(pattern)
        except ValueError as exc:
            raise EngineError(ProblemKind.MALFORMED, f"label {label.name}: {exc}") from exc
    if label.allow_wildcard and not label.dns_suffixes:
        raise EngineError(
            ProblemKind.MALFORMED, f"label {label.name}: wildcards need an allowed DNS suffix"
        )
    if label.max_days is not None and label.max_days < 1:
        raise EngineError(ProblemKind.MALFORMED, f"label {label.name}: max days must be >= 1")


def _check_csrattrs(label: EstLabel) -> None:
    """Refuse csrattrs that the ASN.1 encoder of GET /csrattrs could not encode.

    Raises:
        EngineError: MALFORMED naming the first bad OID.
    """
    for attr in label.csrattrs or ():
        for oid in (attr.oid, *attr.values):
            try:
                if not _OID_RE.match(oid):
                    raise ValueError(oid)
                x509.ObjectIdentifier(oid)
            except ValueError:
                raise EngineError(
                    ProblemKind.MALFORMED, f"label {label.name}: csrattrs: {oid!r} is not an OID"
                ) from None


def label_json(label: EstLabel) -> dict[str, object]:
    """Return a label as JSON values: ``est label list --json`` and the admin API's body.

    Trust anchors are a count (the certificates are the operator's files); ``csrattrs``
    is null when derived from the profile, else ``[{"oid", "values"}]``.
    """
    return {
        "name": label.name,
        "ca": label.ca,
        "profile": label.profile,
        "auth": sorted(str(m) for m in label.auth_modes),
        "trust_anchors": label.trust_anchors_pem.count(b"-----BEGIN CERTIFICATE"),
        "approval_required": label.approval_required,
        "allow_subject_change": label.allow_subject_change,
        "csrattrs": (
            None
            if label.csrattrs is None
            else [{"oid": a.oid, "values": list(a.values)} for a in label.csrattrs]
        ),
        "allow_dns": list(label.dns_suffixes),
        "allow_wildcard": label.allow_wildcard,
        "allow_ip": [str(n) for n in label.ip_ranges],
        "allow_uri": list(label.uri_patterns),
        "allow_email": list(label.email_domains),
        "subject": list(label.subject_patterns),
        "max_days": label.max_days,
        "source": label.source,
    }


def policy_summary(label: EstLabel) -> str:
    """Return the label's name policy in one line (CLI listing, audit)."""
    parts = [f"dns={s}" for s in label.dns_suffixes]
    if label.allow_wildcard:
        parts.append("wildcard")
    parts += [f"ip={n}" for n in label.ip_ranges]
    parts += [f"uri={p}" for p in label.uri_patterns]
    parts += [f"email={d}" for d in label.email_domains]
    parts += [f"subject={p}" for p in label.subject_patterns]
    if label.max_days is not None:
        parts.append(f"max-days={label.max_days}")
    return " ".join(parts) or "device identities only"


def narrow_for_account(
    grant: grants.Grant,
    *,
    dns_suffixes: tuple[str, ...] | None,
    subject_patterns: tuple[str, ...] | None,
    max_days: int | None,
) -> grants.Grant:
    """Return a label's ``grant`` narrowed for one Basic account (never widened).

    None for a field keeps the label's.

    Raises:
        EngineError: UNAUTHORIZED naming ``grant.account`` when the narrowing does not
            fit in the label's grant (a DNS suffix or subject pattern the label lacks).
    """
    if dns_suffixes is None and subject_patterns is None and max_days is None:
        return grant
    try:
        narrowed = grants.narrow(
            grant,
            dns_suffixes=dns_suffixes,
            subject_patterns=subject_patterns,
            max_lifetime=None if max_days is None else timedelta(days=max_days),
        )
    except ValueError as exc:
        raise EngineError(ProblemKind.UNAUTHORIZED, f"grant.account: {exc}") from exc
    if dns_suffixes is not None and len(narrowed.dns_suffixes) != len(dns_suffixes):
        outside = [s for s in dns_suffixes if s not in narrowed.dns_suffixes]
        raise EngineError(
            ProblemKind.UNAUTHORIZED,
            f"grant.account: DNS suffixes {', '.join(outside)} are not under the label's",
        )
    return narrowed


def _default_label() -> EstLabel:
    return EstLabel(name=DEFAULT_LABEL, source="built-in")


class Labels:
    """Labels from the config file, then storage, then the built-in default."""

    def __init__(
        self,
        engine: CAEngine,
        repo: EstRepository,
        *,
        config_labels: Mapping[str, EstLabel],
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._repo = repo
        self._config = dict(config_labels)
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, EstLabel | None]] = {}
        self._anchors: dict[bytes, tuple[x509.Certificate, ...]] = {}

    async def get(self, name: str | None) -> EstLabel:
        """Return the label for a path segment (None: the default label).

        Raises:
            EngineError: NOT_FOUND for an unknown label.
        """
        key = name or DEFAULT_LABEL
        configured = self._config.get(key)
        if configured is not None:
            return configured
        now = self._monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            found = await self._repo.get_label(key) if is_valid_label_name(key) else None
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + _LABEL_TTL, found)
        if found is None and key == DEFAULT_LABEL:
            found = _default_label()
        if found is None:
            raise EngineError(ProblemKind.NOT_FOUND, f"unknown EST label {key!r}")
        return found

    async def list_all(self) -> list[EstLabel]:
        """Return every label: configured, stored and the built-in default."""
        out = dict(self._config)
        for label in await self._repo.list_labels():
            out.setdefault(label.name, label)
        out.setdefault(DEFAULT_LABEL, _default_label())
        return [out[k] for k in sorted(out)]

    async def check(self, label: EstLabel) -> None:
        """Validate a label's references (CA, profile, anchors, name, csrattrs OIDs).

        Raises:
            EngineError: MALFORMED, INVALID_PROFILE, NOT_FOUND (CA).
        """
        if not is_valid_label_name(label.name):
            raise EngineError(
                ProblemKind.MALFORMED,
                f"label names are 1-64 letters, digits, '.', '_' or '-' and not an "
                f"operation name: {label.name!r}",
            )
        self._engine.profile(label.profile)
        if label.ca is not None:
            await self._engine.get_ca(label.ca)
        if not label.auth_modes:
            raise EngineError(ProblemKind.MALFORMED, "a label needs at least one auth mode")
        parse_trust_anchors(label.trust_anchors_pem)
        _check_policy(label)
        _check_csrattrs(label)

    async def add(self, label: EstLabel, *, actor: Principal) -> None:
        """Store a new label.

        Raises:
            EngineError: CONFLICT (exists, or defined in the config file), MALFORMED,
                INVALID_PROFILE, NOT_FOUND (CA).
        """
        await self.check(label)
        if label.name in self._config:
            raise EngineError(
                ProblemKind.CONFLICT, f"label {label.name!r} is defined in the config file"
            )
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="est.label-add",
            target=label.name,
            detail={
                "ca": label.ca or "",
                "profile": label.profile,
                "policy": policy_summary(label),
            },
        )
        await self._repo.add_label(label, audit=audit)
        self._cache.pop(label.name, None)

    async def remove(self, name: str, *, actor: Principal) -> None:
        """Delete a stored label and its accounts.

        Raises:
            EngineError: NOT_FOUND.
        """
        audit = AuditEvent(
            at=self._clock.now(),
            actor=str(actor),
            source=actor.source,
            action="est.label-remove",
            target=name,
        )
        if not await self._repo.remove_label(name, audit=audit):
            raise EngineError(ProblemKind.NOT_FOUND, f"no stored EST label {name!r}")
        self._cache.pop(name, None)

    def anchors(self, label: EstLabel) -> tuple[x509.Certificate, ...]:
        """Return the label's client-certificate trust anchors (parsed once per PEM)."""
        cached = self._anchors.get(label.trust_anchors_pem)
        if cached is None:
            cached = parse_trust_anchors(label.trust_anchors_pem)
            self._anchors[label.trust_anchors_pem] = cached
        return cached
