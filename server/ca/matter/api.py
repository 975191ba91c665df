"""Matter PKI facade: the names front ends (CLI, EST labels) and the engine core call.

The implementation lives in ``server.ca.matter.service``; this module only re-exports
its public surface so callers depend on one stable name. Must not import aiohttp,
josepy or sqlalchemy.
"""

from __future__ import annotations

from server.ca.matter.service import (
    DAC_PROFILE,
    MATTER_PROFILES,
    NOC_PROFILE,
    DeviceCredential,
    MatterCAInfo,
    MatterRequest,
    MatterService,
    info_of,
    issue_matter,
    matter_serial,
    parse_hex_id,
)

__all__ = [
    "DAC_PROFILE",
    "MATTER_PROFILES",
    "NOC_PROFILE",
    "DeviceCredential",
    "MatterCAInfo",
    "MatterRequest",
    "MatterService",
    "info_of",
    "issue_matter",
    "matter_serial",
    "parse_hex_id",
]
