"""Subject patterns match attribute by attribute: a glob never reaches past its own value."""

from __future__ import annotations

import pytest
from cryptography import x509

from server.ca import subjects


def _name(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text, {"serialNumber": x509.NameOID.SERIAL_NUMBER})


@pytest.mark.parametrize(
    ("patterns", "subject", "expected"),
    [
        (["CN=fire-sensor-*"], "CN=fire-sensor-1", True),
        (["CN=fire-sensor-*"], "CN=door-lock-1", False),
        (["CN=fire-sensor-*"], "OU=fire-sensor-1", False),
        # The whole-string glob let "*" swallow another RDN: the subject below was granted.
        (["CN=fire-sensor-*"], "CN=fire-sensor-1,O=Other Corp", False),
        (["CN=fire-sensor-*"], "O=Other Corp,CN=fire-sensor-1", False),
        (["CN=fire-sensor-*,O=Corp"], "O=Corp,CN=fire-sensor-1", True),
        (["O=Corp,CN=fire-sensor-*"], "CN=fire-sensor-1,O=Corp", True),
        (["CN=fire-sensor-*,O=Corp"], "CN=fire-sensor-1", False),
        (["serialNumber=*,CN=door-*"], "CN=door-1,serialNumber=A1", True),
        (["serialNumber=*,CN=door-*"], "CN=door-1,serialNumber=A1,OU=x", False),
        (["OU=a*,OU=b*,CN=x"], "OU=b1,OU=a1,CN=x", True),
        (["OU=a*,OU=a*,CN=x"], "OU=b1,OU=a1,CN=x", False),
        # A value that looks like an RDN is one value, escaped.
        (["CN=fire-sensor-*"], r"CN=fire-sensor-1\,O=Corp", True),
        (["CN=a", "CN=b"], "CN=b", True),
        (["*"], "CN=anything,O=at all", True),
        (["not a pattern"], "CN=x", False),
    ],
)
def test_matches(patterns: list[str], subject: str, expected: bool) -> None:
    assert subjects.matches(patterns, _name(subject)) is expected


@pytest.mark.parametrize("pattern", ["fire-*", "", "CN", "=x"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="subject pattern"):
        subjects.check_pattern(pattern)


@pytest.mark.parametrize("pattern", ["*", "CN=*", "CN=fire-*,serialNumber=*", "2.5.4.5=*"])
def test_good_patterns_pass(pattern: str) -> None:
    subjects.check_pattern(pattern)
