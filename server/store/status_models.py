"""SQLAlchemy tables of the revocation services; the schema is owned by migration 0004_status.

Rows never leave ``server/store``: ``status_repository.py`` converts them to
``server.ca.status.ports`` types.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base, CertificateRow

__all__ = ["CrlDirtyRow", "OcspResponseRow", "OcspSignerRow"]

# CRL regeneration reads only the revocations since its last run (server/ca/status/crls.py).
Index("ix_certificates_ca_revoked_at", CertificateRow.ca_id, CertificateRow.revoked_at)


class OcspResponseRow(Base):
    """The pre-signed OCSP response of one (issuer, serial): answering is one key lookup."""

    __tablename__ = "ocsp_responses"
    __table_args__ = (
        Index("ix_ocsp_responses_updated_at", "updated_at"),
        Index("ix_ocsp_responses_this_update", "this_update"),
    )

    ca_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    serial: Mapped[str] = mapped_column(String(42), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_status: Mapped[str] = mapped_column(String(16))
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OcspSignerRow(Base):
    """A delegated OCSP signer certificate and its (encrypted) key; the newest is used."""

    __tablename__ = "ocsp_signers"
    __table_args__ = (Index("ix_ocsp_signers_ca_created", "ca_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ca_id: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(42))
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_backend: Mapped[str] = mapped_column(String(16))
    key_ref: Mapped[str] = mapped_column(String(128))
    key_blob: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CrlDirtyRow(Base):
    """A CA whose CRL misses a revocation made at ``marked_at`` (debounced regeneration)."""

    __tablename__ = "crl_dirty"

    ca_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
