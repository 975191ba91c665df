"""Matter object identifiers (Matter Core Specification 6.1, 6.5.6).

Owns the OID constants shared by the Matter profiles, validator and TLV codec.
Imports only cryptography.
"""

from __future__ import annotations

from typing import Final

from cryptography.x509 import ObjectIdentifier

__all__ = [
    "CASE_AUTH_TAG",
    "FABRIC_ID",
    "FIRMWARE_SIGNING_ID",
    "ICAC_ID",
    "NODE_ID",
    "PRODUCT_ID",
    "RCAC_ID",
    "VENDOR_ID",
]

# Device attestation DN attributes (6.2.2.2): UTF8String, 4 uppercase hex digits.
VENDOR_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.2.1")
PRODUCT_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.2.2")

# Operational DN attributes (6.5.6.1): UTF8String of uppercase hex, 16 digits (CAT: 8).
NODE_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.1")
FIRMWARE_SIGNING_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.2")
ICAC_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.3")
RCAC_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.4")
FABRIC_ID: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.5")
CASE_AUTH_TAG: Final = ObjectIdentifier("1.3.6.1.4.1.37244.1.6")
