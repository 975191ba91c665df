"""Invariants the fault suite checks after each fault, as pure functions over plain data.

Each returns what breaks the invariant (empty when it holds), so a unit test can feed
deliberately broken data (tests/conformance/faults/test_invariants.py) and see every
checker fail: a checker that cannot fail is no check. The driver gathers the data (rows
from the database, what clients received, what each node answered) and prints the result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509

__all__ = [
    "ISSUE_ACTION",
    "CrlRow",
    "NonceRace",
    "crls_per_revocation",
    "duplicate_crl_numbers",
    "duplicate_serials",
    "lost_certificates",
    "nonce_races_not_exactly_once",
    "nonces_accepted_twice",
    "stale_crl_nodes",
    "without_one_audit_record",
]

# The audit action of an issuance; its target ends in "/<serial in upper-case hex>".
ISSUE_ACTION: Final = "cert.issue"


def lost_certificates(received: Iterable[bytes], stored: Iterable[bytes]) -> list[bytes]:
    """Return the certificates a client received that are not stored byte for byte."""
    kept = set(stored)
    return [der for der in received if der not in kept]


def duplicate_serials(
    received: Iterable[bytes], stored: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Return (issuer or CA, serial) pairs seen twice, among received or among stored rows.

    Args:
        received: DER certificates clients received; keyed by issuer DN and serial.
        stored: (ca_id, serial) rows of the certificates table.
    """
    keys = Counter(
        (cert.issuer.rfc4514_string(), f"{cert.serial_number:X}")
        for cert in map(x509.load_der_x509_certificate, received)
    )
    rows = Counter((ca, serial.upper()) for ca, serial in stored)
    return sorted(k for counts in (keys, rows) for k, n in counts.items() if n > 1)


def without_one_audit_record(
    received: Iterable[bytes], audit: Iterable[tuple[str, str]]
) -> list[str]:
    """Return serials (hex) of received certificates without exactly one issuance record.

    Args:
        received: DER certificates clients received.
        audit: (action, target) of every audit row; other actions are ignored.
    """
    counts = Counter(
        target.rsplit("/", 1)[-1].upper() for action, target in audit if action == ISSUE_ACTION
    )
    serials = (f"{x509.load_der_x509_certificate(der).serial_number:X}" for der in received)
    return [s for s in serials if counts[s] != 1]


@dataclass(frozen=True, slots=True)
class NonceRace:
    """One nonce sent to several nodes at once: the HTTP status each node answered."""

    nonce: str
    answers: tuple[tuple[str, int, str], ...]  # (node, status, ACME problem type or "")

    @property
    def accepted(self) -> int:
        """Return how many nodes accepted the nonce (any answer but badNonce)."""
        return sum(accepted for _, accepted in self.uses())

    def uses(self) -> list[tuple[str, bool]]:
        """Return (nonce, accepted) for each node's answer."""
        return [(self.nonce, not _is_bad_nonce(s, p)) for _, s, p in self.answers]


def _is_bad_nonce(status: int, problem: str) -> bool:
    return status == 400 and problem == "urn:ietf:params:acme:error:badNonce"


def nonces_accepted_twice(uses: Iterable[tuple[str, bool]]) -> list[str]:
    """Return nonces accepted more than once, from (nonce, accepted) per use on any node."""
    counts = Counter(nonce for nonce, accepted in uses if accepted)
    return sorted(n for n, c in counts.items() if c > 1)


def nonce_races_not_exactly_once(races: Sequence[NonceRace]) -> list[NonceRace]:
    """Return races where the nonce was not accepted exactly once, or an answer was no verdict.

    The one accepted use must succeed (2xx); the others must be badNonce. A 5xx or a
    dropped connection is neither and fails the race too.
    """
    bad: list[NonceRace] = []
    for race in races:
        verdicts = [
            200 <= status < 300 or _is_bad_nonce(status, problem)
            for _, status, problem in race.answers
        ]
        if race.accepted != 1 or not all(verdicts):
            bad.append(race)
    return bad


@dataclass(frozen=True, slots=True)
class CrlRow:
    """One row of the crls table, with the serials its DER lists."""

    ca_id: str
    number: int
    serials: frozenset[int]


def duplicate_crl_numbers(rows: Iterable[CrlRow]) -> list[tuple[str, int]]:
    """Return (ca_id, number) pairs held by more than one CRL."""
    counts = Counter((r.ca_id, r.number) for r in rows)
    return sorted(k for k, n in counts.items() if n > 1)


def crls_per_revocation(
    before: Iterable[CrlRow], after: Iterable[CrlRow], ca_id: str, serial: int
) -> list[str]:
    """Return what breaks "one revocation, exactly one new CRL" for one isolated revocation.

    The revocation (no other within the debounce) must add exactly one CRL row for its
    CA, numbered above every earlier CRL of that CA, that lists the serial.
    """
    old = [r for r in before if r.ca_id == ca_id]
    old_numbers = {r.number for r in old}
    new = [r for r in after if r.ca_id == ca_id and r.number not in old_numbers]
    problems: list[str] = []
    if len(new) != 1:
        problems.append(
            f"{len(new)} new CRLs for one revocation (numbers {[r.number for r in new]})"
        )
    top = max(old_numbers, default=0)
    problems += [f"CRL {r.number} is not above {top}" for r in new if r.number <= top]
    problems += [f"CRL {r.number} omits the serial" for r in new if serial not in r.serials]
    return problems


def stale_crl_nodes(served: dict[str, int | None], newest: int) -> list[str]:
    """Return the nodes whose served CRL number (None: no CRL) is not the newest stored."""
    return sorted(node for node, number in served.items() if number != newest)
