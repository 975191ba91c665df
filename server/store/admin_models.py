"""SQLAlchemy models of admin API identities: bearer tokens (hash only) and admin certificates.

Rows never leave ``server/store``: ``admin_repository.py`` converts them to engine
types. The schema is owned by migration 0008_admin.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base

__all__ = ["AdminCertificateRow", "AdminTokenRow"]


class AdminTokenRow(Base):
    """An admin bearer token: the SHA-256 of its secret, never the secret."""

    __tablename__ = "admin_tokens"
    __table_args__ = (Index("ix_admin_tokens_hash", "token_hash", unique=True),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str | None] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AdminCertificateRow(Base):
    """A role and scope bound to one admin CA certificate serial."""

    __tablename__ = "admin_certificates"
    __table_args__ = (Index("ix_admin_certificates_name", "name"),)

    serial: Mapped[str] = mapped_column(String(42), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
