"""The ACME engine facade: the one module ``protocols/acme`` imports for ACME logic.

Re-exports the ACME engine types, settings, ports, ``Directories`` (named
directories, one service each) and ``AcmeService`` (which
composes ``accounts``, ``orders``, ``finalize``, ``revocation`` and ``renewal``),
plus the pure helpers the front end needs (key authorizations, ARI certificate
ids). Must not import aiohttp, josepy or sqlalchemy.
"""

from __future__ import annotations

from server.ca.acme.directories import Directories, is_valid_directory_name, settings_for
from server.ca.acme.ports import (
    AcmeRepository,
    FetchResult,
    HttpFetcher,
    NetworkError,
    TlsAlpnProber,
    TxtResolver,
)
from server.ca.acme.renewal import RenewalWindow, cert_id_of
from server.ca.acme.service import AcmeService
from server.ca.acme.settings import AcmeSettings
from server.ca.acme.types import (
    DEFAULT_DIRECTORY,
    Account,
    AccountId,
    AccountKey,
    AccountStatus,
    AcmeDirectory,
    Authorization,
    AuthzId,
    AuthzStatus,
    Challenge,
    ChallengeStatus,
    ChallengeType,
    EabBinding,
    EabKey,
    Identifier,
    IdentifierType,
    Order,
    OrderId,
    OrderStatus,
    StoredProblem,
)
from server.ca.acme.validation import (
    ACME_IDENTIFIER_OID,
    ValidationPorts,
    ValidationSettings,
    dns01_value,
    is_ip_literal,
    key_authorization,
    target_permitted,
)
from server.ca.acme.workqueue import ValidationQueue

__all__ = [
    "ACME_IDENTIFIER_OID",
    "DEFAULT_DIRECTORY",
    "Account",
    "AccountId",
    "AccountKey",
    "AccountStatus",
    "AcmeDirectory",
    "AcmeRepository",
    "AcmeService",
    "AcmeSettings",
    "Authorization",
    "AuthzId",
    "AuthzStatus",
    "Challenge",
    "ChallengeStatus",
    "ChallengeType",
    "Directories",
    "EabBinding",
    "EabKey",
    "FetchResult",
    "HttpFetcher",
    "Identifier",
    "IdentifierType",
    "NetworkError",
    "Order",
    "OrderId",
    "OrderStatus",
    "RenewalWindow",
    "StoredProblem",
    "TlsAlpnProber",
    "TxtResolver",
    "ValidationPorts",
    "ValidationQueue",
    "ValidationSettings",
    "cert_id_of",
    "dns01_value",
    "is_ip_literal",
    "is_valid_directory_name",
    "key_authorization",
    "settings_for",
    "target_permitted",
]
