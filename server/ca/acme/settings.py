"""ACME policy settings: lifetimes, limits, profiles and directory meta.

Parsed and validated by ``server.config`` (``AcmeConfig.to_engine``); every part of
the ACME engine reads the same frozen value. Must not import aiohttp, josepy or
sqlalchemy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from server.ca import grants
from server.ca.acme import types as at
from server.ca.acme import validation

__all__ = ["VALIDATED_NAMES", "AcmeSettings"]

VALIDATED_NAMES = grants.Grant(
    cas=frozenset({grants.ANY}),
    profiles=frozenset({grants.ANY}),
    dns_suffixes=(grants.ANY,),
    allow_wildcard=True,
    ip_ranges=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
)
"""A directory's default grant: any DNS name or IP address its challenges prove.

The directory's profiles, its CA's suffix policy and the chain's name constraints
still apply; a directory configured with suffixes or ranges narrows this.
"""


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    """ACME policy, validated by ``server.config`` before it gets here."""

    # The directory these settings serve: accounts are bound to it.
    directory: str = at.DEFAULT_DIRECTORY
    ca: str | None = None
    grant: grants.Grant = VALIDATED_NAMES
    eab_required: bool = False
    # An EAB key admits one account unless reuse is on (every bound account is recorded).
    eab_reuse: bool = False
    authz_reuse: bool = True
    # Limits on by default (issue 13); 0 turns one off. Each is well above what a
    # client renewing its certificates needs, and far below what fills a database.
    orders_per_account_per_hour: int = 300
    accounts_per_ip_per_hour: int = 50
    pending_authzs_per_account: int = 1000
    order_lifetime: timedelta = timedelta(days=7)
    pending_authz_lifetime: timedelta = timedelta(days=7)
    valid_authz_lifetime: timedelta = timedelta(days=30)
    nonce_lifetime: timedelta = timedelta(hours=1)
    account_cache_seconds: float = 5.0
    max_identifiers: int = 100
    validation_concurrency: int = 32
    # Validations queued or running per process; beyond it a challenge POST is rateLimited.
    validation_queue: int = 1000
    # ACME profile name (draft-aaron-acme-profiles) -> engine profile name.
    profiles: Mapping[str, str] = field(
        default_factory=lambda: {"tls-server": "tls-server", "shortlived": "short-lived"}
    )
    default_profile: str = "tls-server"
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    validation: validation.ValidationSettings = field(default_factory=validation.ValidationSettings)
