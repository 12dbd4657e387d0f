"""Users, the audit chain and the PII-free aggregates that survive every wipe."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from kernel.models.base import Base, enum_column, utcnow
from kernel.models.enums import Role


class User(Base):
    """A personal console account (R-10: no shared ids)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(enum_column(Role))
    password_hash: Mapped[str] = mapped_column(String(200))
    sealed_totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Append-only, hash-chained: who did what to which object; never personal values."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class DailyAggregate(Base):
    """A PII-free counter: one metric for one day, campaign and dimension (e.g. 債権種別)."""

    __tablename__ = "daily_aggregates"
    __table_args__ = (
        Index("ix_daily_aggregates_key", "day", "campaign_id", "dimension", "metric", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date]
    campaign_id: Mapped[int] = mapped_column(index=True)
    dimension: Mapped[str] = mapped_column(String(64), default="total")
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(default=0)
