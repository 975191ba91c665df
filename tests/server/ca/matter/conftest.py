"""Fixtures for the Matter package tests: tests/data/matter vectors and throw-away Matter PKIs.

Keys are generated per session and never written to disk. Fixtures return library
types only, so test modules never import this file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.matter import profiles
from tests.support import MATTER_VECTORS

_NOT_BEFORE: Final = datetime(2024, 1, 1, tzinfo=UTC)
_FABRIC: Final = 0xFAB0_0000_0000_001D


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Return the Matter vector directory (tests/data/matter, see its README)."""
    return MATTER_VECTORS


@pytest.fixture(scope="session")
def paa_key() -> ec.EllipticCurvePrivateKey:
    """Return the test PAA key."""
    return _key()


@pytest.fixture(scope="session")
def paa(paa_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Return a VID-scoped (FFF1) test PAA."""
    return profiles.build_paa(
        paa_key,
        name="privca Test PAA",
        vid=0xFFF1,
        not_before=_NOT_BEFORE,
        not_after=None,
        serial=1,
    )


@pytest.fixture(scope="session")
def pai_key() -> ec.EllipticCurvePrivateKey:
    """Return the test PAI key."""
    return _key()


@pytest.fixture(scope="session")
def pai(
    paa: x509.Certificate, paa_key: ec.EllipticCurvePrivateKey, pai_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """Return a PID-scoped (FFF1/8000) test PAI under ``paa``."""
    return profiles.build_pai(
        pai_key.public_key(),
        issuer_cert=paa,
        issuer_key=paa_key,
        name="privca Test PAI",
        vid=0xFFF1,
        pid=0x8000,
        not_before=_NOT_BEFORE,
        not_after=None,
        serial=2,
    )


@pytest.fixture(scope="session")
def rcac_key() -> ec.EllipticCurvePrivateKey:
    """Return the test RCAC key."""
    return _key()


@pytest.fixture(scope="session")
def rcac(rcac_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Return a test RCAC with fabric id FAB000000000001D and pathLen 1."""
    return profiles.build_rcac(
        rcac_key,
        rcac_id=0xCACA_CACA_0000_0001,
        fabric_id=_FABRIC,
        not_before=_NOT_BEFORE,
        not_after=None,
        serial=10,
        path_len=1,
    )


@pytest.fixture(scope="session")
def icac_key() -> ec.EllipticCurvePrivateKey:
    """Return the test ICAC key."""
    return _key()


@pytest.fixture(scope="session")
def icac(
    rcac: x509.Certificate,
    rcac_key: ec.EllipticCurvePrivateKey,
    icac_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """Return a test ICAC under ``rcac`` on the same fabric."""
    return profiles.build_icac(
        icac_key.public_key(),
        issuer_cert=rcac,
        issuer_key=rcac_key,
        icac_id=0xCACA_CACA_0000_0003,
        fabric_id=_FABRIC,
        not_before=_NOT_BEFORE,
        not_after=None,
        serial=11,
    )
