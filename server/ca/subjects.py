"""Subject patterns: which distinguished names a grant allows, attribute by attribute.

A pattern is an RFC 4514 name whose values are shell-style globs
(``CN=fire-sensor-*``, ``serialNumber=*,CN=door-*``). A subject matches when its
attributes pair off one to one with the pattern's: same attribute type, value
matching the glob. Order does not matter and a subject with an attribute the
pattern does not name is refused, so a glob never reaches past its own value
(``CN=fire-sensor-*`` does not match ``CN=fire-sensor-1,O=Other Corp``). The
pattern ``*`` alone matches any subject. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Sequence
from typing import Final

from cryptography import x509

from server.ca import issuance

__all__ = ["ANY_SUBJECT", "check_pattern", "matches"]

ANY_SUBJECT: Final = "*"

_Attribute = tuple[x509.ObjectIdentifier, str]


@functools.lru_cache(maxsize=1024)
def _parse(pattern: str) -> tuple[_Attribute, ...]:
    try:
        name = x509.Name.from_rfc4514_string(pattern, issuance.EXTRA_ATTRIBUTES)
    except ValueError as exc:
        raise ValueError(f"subject pattern {pattern!r} is not an RFC 4514 name") from exc
    attributes = tuple((a.oid, _text(a.value)) for a in name)
    if not attributes:
        raise ValueError(f"subject pattern {pattern!r} names no attribute")
    return attributes


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


def check_pattern(pattern: str) -> None:
    """Refuse a pattern that is not ``*`` or an RFC 4514 name of globs.

    Raises:
        ValueError: naming the pattern.
    """
    if pattern != ANY_SUBJECT:
        _parse(pattern)


def _pairs_off(wanted: Sequence[_Attribute], have: list[_Attribute]) -> bool:
    """Whether every wanted attribute takes a distinct one of ``have`` and none is left."""
    if not wanted:
        return not have
    oid, glob = wanted[0]
    return any(
        h_oid == oid
        and fnmatch.fnmatchcase(value, glob)
        and _pairs_off(wanted[1:], have[:i] + have[i + 1 :])
        for i, (h_oid, value) in enumerate(have)
    )


def _matches_one(pattern: str, attributes: list[_Attribute]) -> bool:
    if pattern == ANY_SUBJECT:
        return True
    try:
        wanted = _parse(pattern)
    except ValueError:
        return False  # an unparseable stored pattern grants nothing
    return len(wanted) == len(attributes) and _pairs_off(wanted, attributes)


def matches(patterns: Sequence[str], subject: x509.Name) -> bool:
    """Return whether ``subject`` matches one of ``patterns``."""
    attributes = [(a.oid, _text(a.value)) for a in subject]
    return any(_matches_one(p, attributes) for p in patterns)
