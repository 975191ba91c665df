"""The revocation front ends share the OCSP fixtures."""

from tests.protocols.ocsp.conftest import (  # noqa: F401 - fixtures used by the CRL tests
    client,
    revocation_options,
    services,
)
