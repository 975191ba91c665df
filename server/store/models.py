"""SQLAlchemy 2 table models; the schema itself is owned by the Alembic migrations.

Rows never leave ``server/store``: ``repository.py`` converts them to engine types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuditHeadRow",
    "AuditRow",
    "Base",
    "CARow",
    "CertificateRow",
    "CrlNumberRow",
    "CrlRow",
    "MetaRow",
]


class Base(DeclarativeBase):
    """Declarative base for every privca table."""


class CARow(Base):
    """A certificate authority and its (encrypted or HSM-referenced) key."""

    __tablename__ = "cas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[str | None] = mapped_column(String(32))
    tier: Mapped[int] = mapped_column(Integer)
    key_algorithm: Mapped[str] = mapped_column(String(16))
    key_backend: Mapped[str] = mapped_column(String(16))
    key_ref: Mapped[str] = mapped_column(String(128))
    key_blob: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cert_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    chain_der: Mapped[list[str]] = mapped_column(JSON)
    external: Mapped[bool] = mapped_column(Boolean)
    allowed_dns_suffixes: Mapped[list[str]] = mapped_column(JSON)
    allowed_ip_networks: Mapped[list[str]] = mapped_column(JSON)
    publish_revocation: Mapped[bool] = mapped_column(Boolean)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    # Optimistic concurrency: every update of the row writes version + 1 where version matches.
    version: Mapped[int] = mapped_column(Integer, default=0)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CertificateRow(Base):
    """An issued certificate; (ca_id, serial) is unique (RFC 5280 §4.1.2.2)."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("ca_id", "serial", name="uq_certificates_ca_serial"),
        Index("ix_certificates_serial", "serial"),
        Index("ix_certificates_not_after", "not_after"),
        Index("ix_certificates_ca_status", "ca_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ca_id: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(42))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    profile: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    sans: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    requester: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    is_ca: Mapped[bool] = mapped_column(Boolean)


class CrlRow(Base):
    """A generated CRL; every one is kept, the highest number is served."""

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("ca_id", "number", name="uq_crls_ca_number"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ca_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)


class CrlNumberRow(Base):
    """The last CRL number handed out per CA (monotonic across nodes)."""

    __tablename__ = "crl_numbers"

    ca_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


class AuditRow(Base):
    """Append-only, hash-chained audit trail (``server.store.audit_chain`` appends)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        UniqueConstraint("seq", name="uq_audit_log_seq"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, str]] = mapped_column(JSON)
    seq: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(255), server_default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain head: one row (id 1) with the last record's seq and hash.

    Every append locks it first, so writers on every node serialise on it.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class MetaRow(Base):
    """Installation-wide facts shared by every node and the CLI (e.g. the public HTTP URL)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


from server.store import acme_models as _acme_models  # noqa: E402, F401 - register ACME tables for Alembic
from server.store import admin_models as _admin_models  # noqa: E402, F401 - register admin API tables for Alembic
from server.store import est_models as _est_models  # noqa: E402, F401 - register EST tables for Alembic
from server.store import status_models as _status_models  # noqa: E402, F401 - register revocation-service tables for Alembic
