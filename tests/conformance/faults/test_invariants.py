"""The fault suite's invariant checkers (conformance/faults/invariants.py) on broken data.

The suite runs them against real nodes where they should find nothing; here each is fed
data that breaks its invariant (a duplicate serial, a certificate missing its audit
record or its stored copy, a nonce accepted twice, two CRLs with one number) and must
report it, next to a control that holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.faults import invariants as inv

_KEY = ec.generate_private_key(ec.SECP256R1())
_BAD_NONCE = "urn:ietf:params:acme:error:badNonce"


def cert(serial: int, issuer: str = "Faults Issuing CA") -> bytes:
    """Return a DER certificate with this serial and issuer name."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.now(UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(_KEY, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.DER)


def test_lost_certificates_finds_a_received_certificate_not_stored_byte_for_byte() -> None:
    one, two = cert(0x1A), cert(0x1B)
    assert inv.lost_certificates([one, two], [one, two]) == []
    assert inv.lost_certificates([one, two], [one]) == [two]
    # Same serial and name, other bytes (a fresh signature): not the certificate received.
    assert inv.lost_certificates([one], [cert(0x1A)]) == [one]


def test_duplicate_serials_finds_a_serial_twice_among_received_or_stored() -> None:
    assert inv.duplicate_serials([cert(1), cert(2)], [("ca1", "1"), ("ca1", "2")]) == []
    assert inv.duplicate_serials([cert(1), cert(1)], [("ca1", "1")]) == [
        ("CN=Faults Issuing CA", "1")
    ]
    assert inv.duplicate_serials([cert(1)], [("ca1", "0a"), ("ca1", "0A")]) == [("ca1", "0A")]
    # Same serial under two issuers is no duplicate.
    assert inv.duplicate_serials([cert(1), cert(1, "Other CA")], [("ca1", "1"), ("ca2", "1")]) == []


def test_without_one_audit_record_finds_missing_and_doubled_issuance_records() -> None:
    one, two = cert(0xAB), cert(0xCD)
    audit = [("cert.issue", "issuing/AB"), ("cert.issue", "issuing/CD"), ("crl.generate", "x")]
    assert inv.without_one_audit_record([one, two], audit) == []
    assert inv.without_one_audit_record([one, two], audit[:1]) == ["CD"]
    assert inv.without_one_audit_record([one], [*audit, ("cert.issue", "issuing/AB")]) == ["AB"]
    # Another action on the same target is not an issuance record.
    assert inv.without_one_audit_record([two], [("cert.revoke", "issuing/CD")]) == ["CD"]


def test_nonces_accepted_twice_finds_a_second_acceptance_on_any_node() -> None:
    assert inv.nonces_accepted_twice([("n1", True), ("n1", False), ("n2", True)]) == []
    assert inv.nonces_accepted_twice([("n1", True), ("n2", True), ("n1", True)]) == ["n1"]


@pytest.mark.parametrize(
    ("answers", "holds"),
    [
        pytest.param((("A", 200, ""), ("B", 400, _BAD_NONCE)), True, id="ok/one-accepted"),
        pytest.param((("A", 400, _BAD_NONCE), ("B", 201, "")), True, id="ok/other-node-wins"),
        pytest.param((("A", 200, ""), ("B", 200, "")), False, id="fail/accepted-twice"),
        pytest.param(
            (("A", 400, _BAD_NONCE), ("B", 400, _BAD_NONCE)), False, id="fail/accepted-nowhere"
        ),
        pytest.param((("A", 200, ""), ("B", 503, "")), False, id="fail/no-verdict"),
        pytest.param(
            (("A", 200, ""), ("B", 400, "urn:ietf:params:acme:error:malformed")),
            False,
            id="fail/other-problem-counts-as-accepted",
        ),
    ],
)
def test_nonce_races_not_exactly_once(
    answers: tuple[tuple[str, int, str], ...], holds: bool
) -> None:
    race = inv.NonceRace("n1", answers)
    assert (inv.nonce_races_not_exactly_once([race]) == []) is holds


def test_duplicate_crl_numbers_finds_two_crls_of_one_ca_with_one_number() -> None:
    rows = [inv.CrlRow("ca1", 1, frozenset()), inv.CrlRow("ca1", 2, frozenset({5}))]
    assert inv.duplicate_crl_numbers([*rows, inv.CrlRow("ca2", 2, frozenset())]) == []
    assert inv.duplicate_crl_numbers([*rows, inv.CrlRow("ca1", 2, frozenset({5}))]) == [("ca1", 2)]


def test_crls_per_revocation_wants_exactly_one_new_crl_above_the_rest_listing_the_serial() -> None:
    before = [inv.CrlRow("ca1", 3, frozenset({1})), inv.CrlRow("ca2", 9, frozenset())]
    good = [*before, inv.CrlRow("ca1", 4, frozenset({1, 7}))]
    assert inv.crls_per_revocation(before, good, "ca1", 7) == []
    assert inv.crls_per_revocation(before, before, "ca1", 7) == [
        "0 new CRLs for one revocation (numbers [])"
    ]
    twice = [*good, inv.CrlRow("ca1", 5, frozenset({1, 7}))]
    assert inv.crls_per_revocation(before, twice, "ca1", 7) == [
        "2 new CRLs for one revocation (numbers [4, 5])"
    ]
    assert inv.crls_per_revocation(
        before, [*before, inv.CrlRow("ca1", 4, frozenset({1}))], "ca1", 7
    ) == ["CRL 4 omits the serial"]
    lower = [*before, inv.CrlRow("ca1", 2, frozenset({1, 7}))]
    assert inv.crls_per_revocation(before, lower, "ca1", 7) == ["CRL 2 is not above 3"]
    # Another CA's new CRL does not count for this one.
    other = [*before, inv.CrlRow("ca2", 10, frozenset({7}))]
    assert inv.crls_per_revocation(before, other, "ca1", 7)[0].startswith("0 new CRLs")


def test_stale_crl_nodes_finds_a_node_serving_an_older_crl_or_none() -> None:
    assert inv.stale_crl_nodes({"A": 4, "B": 4}, 4) == []
    assert inv.stale_crl_nodes({"A": 4, "B": 3, "C": None}, 4) == ["B", "C"]
