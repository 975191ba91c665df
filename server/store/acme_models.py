"""SQLAlchemy tables of the ACME server; the schema is owned by migrations 0002, 0005, 0006, 0011.

Rows never leave ``server/store``: ``acme_repository.py`` converts them to
``server.ca.acme.types``. Challenges live inside their authorization row (JSON)
so a challenge update is one single-row write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base

__all__ = [
    "AcmeAccountRow",
    "AcmeAuthzRow",
    "AcmeDirectoryRow",
    "AcmeEabKeyRow",
    "AcmeNonceRow",
    "AcmeOrderRow",
    "AcmeRateLimitRow",
    "AcmeReplacementRow",
    "AcmeStateRow",
]


class AcmeAccountRow(Base):
    """An ACME account; one account per key (thumbprint unique)."""

    __tablename__ = "acme_accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    jwk: Mapped[str] = mapped_column(Text)
    spki: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    contact: Mapped[list[str]] = mapped_column(JSON)
    tos_agreed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    eab_kid: Mapped[str | None] = mapped_column(String(64))
    # The directory the account was created in (migration 0005); "default": /acme/directory.
    directory: Mapped[str] = mapped_column(String(64), server_default="default")


class AcmeOrderRow(Base):
    """An order; identifiers and authorization ids as JSON lists."""

    __tablename__ = "acme_orders"
    __table_args__ = (
        Index("ix_acme_orders_account", "account_id", "created_at"),
        Index("ix_acme_orders_processing", "processing_since"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    identifiers: Mapped[list[list[str]]] = mapped_column(JSON)
    authz_ids: Mapped[list[str]] = mapped_column(JSON)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    profile: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cert_ref: Mapped[str | None] = mapped_column(String(80))
    replaces: Mapped[str | None] = mapped_column(String(200))
    # Set by a finalize's claim, cleared when it ends (migration 0011): a claim older
    # than the recovery bound was left by a process that died. The CSR key's SHA-256
    # (hex) finds a certificate that process issued before dying.
    processing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    csr_key_sha256: Mapped[str | None] = mapped_column(String(64))


class AcmeAuthzRow(Base):
    """An authorization with its challenges (JSON) and a validation claim flag."""

    __tablename__ = "acme_authzs"
    __table_args__ = (
        Index("ix_acme_authzs_reuse", "account_id", "ident_value", "status"),
        Index("ix_acme_authzs_validating", "validating_since"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    ident_type: Mapped[str] = mapped_column(String(8))
    ident_value: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    wildcard: Mapped[bool] = mapped_column(Boolean)
    challenges: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    validating: Mapped[bool] = mapped_column(Boolean)
    # When the claim (validating) was taken; None when not validating (migration 0011).
    validating_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AcmeNonceRow(Base):
    """A replay nonce that has been used (single use across every node)."""

    __tablename__ = "acme_used_nonces"
    __table_args__ = (Index("ix_acme_used_nonces_expires", "expires"),)

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AcmeEabKeyRow(Base):
    """An External Account Binding HMAC key."""

    __tablename__ = "acme_eab_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean)
    # Accounts bound with the key (migration 0006); a single-use key binds while it is 0.
    bindings: Mapped[int] = mapped_column(Integer, server_default="0")


class AcmeReplacementRow(Base):
    """The order holding a certificate's one replacement slot (RFC 9773 §5; migration 0006).

    The primary key makes two racing newOrders naming the same ``replaces`` collide.
    """

    __tablename__ = "acme_replacements"

    cert_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(32))


class AcmeStateRow(Base):
    """Installation-wide ACME secrets (the nonce MAC key), shared by every node."""

    __tablename__ = "acme_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class AcmeRateLimitRow(Base):
    """A fixed-window rate-limit counter shared by every node (key: what is limited)."""

    __tablename__ = "acme_rate_limits"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


class AcmeDirectoryRow(Base):
    """A named ACME directory managed by the CLI (config-file directories are not stored)."""

    __tablename__ = "acme_directories"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca: Mapped[str] = mapped_column(String(64))
    # ACME profile names; None: every configured profile.
    profiles: Mapped[list[str] | None] = mapped_column(JSON)
    dns_suffixes: Mapped[list[str]] = mapped_column(JSON)
    ip_ranges: Mapped[list[str]] = mapped_column(JSON)
    wildcard: Mapped[bool] = mapped_column(Boolean)
    # None: the global [acme] eab_required.
    eab_required: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
