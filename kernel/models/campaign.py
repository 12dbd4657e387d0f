"""Campaigns, the imports that feed them and their erasure certificates."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kernel.models.base import Base, enum_column, utcnow
from kernel.models.enums import CampaignStatus, DisclosureLevel


class Campaign(Base):
    """One 催告実施: a set of targets contacted under one script, then exported and wiped."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[CampaignStatus] = mapped_column(
        enum_column(CampaignStatus), default=CampaignStatus.DRAFT, index=True
    )
    disclosure_level: Mapped[DisclosureLevel] = mapped_column(
        enum_column(DisclosureLevel), default=DisclosureLevel.NOTICE
    )
    script_name: Mapped[str] = mapped_column(String(100), default="standard")
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    holdout_share: Mapped[float] = mapped_column(default=0.0)
    holdout_seed: Mapped[int | None]
    holdout_assigned_at: Mapped[datetime | None]
    as_of: Mapped[date | None]
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    exported_at: Mapped[datetime | None]
    wiped_at: Mapped[datetime | None]


class ImportBatch(Base):
    """One file or SQL pull loaded by the sync job; counts only, no personal values."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    layout: Mapped[str] = mapped_column(String(64))
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    rows_read: Mapped[int] = mapped_column(default=0)
    rows_loaded: Mapped[int] = mapped_column(default=0)
    rows_rejected: Mapped[int] = mapped_column(default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    imported_by: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResultsExport(Base):
    """A results file handed back to the arrears system (what the wipe waits for)."""

    __tablename__ = "results_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    row_count: Mapped[int]
    file_sha256: Mapped[str] = mapped_column(String(64))
    exported_by: Mapped[str] = mapped_column(String(64))
    exported_at: Mapped[datetime] = mapped_column(default=utcnow)


class ErasureCertificate(Base):
    """What was erased, how, by whom and when (R-11). Kept after the campaign is wiped."""

    __tablename__ = "erasure_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(index=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(64))
    forced_reason: Mapped[str | None] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body_sha256: Mapped[str] = mapped_column(String(64))
