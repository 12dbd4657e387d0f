"""Contacts with residents: attempts, hand-offs, callback requests and the lists that stop them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kernel.models.base import Base, enum_column, utcnow
from kernel.models.enums import AttemptStatus, CallbackStatus, Channel, HandOffStatus


class Attempt(Base):
    """One scheduled contact (IVR call, SMS, operator call or letter) and its outcome."""

    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_due", "status", "scheduled_at"),
        Index("ix_attempts_follow_up", "follow_up_planned", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), index=True
    )
    phone_id: Mapped[int | None] = mapped_column(
        ForeignKey("phones.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    sequence_no: Mapped[int] = mapped_column(default=1)
    status: Mapped[AttemptStatus] = mapped_column(
        enum_column(AttemptStatus), default=AttemptStatus.SCHEDULED
    )
    scheduled_at: Mapped[datetime]
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    carrier: Mapped[str | None] = mapped_column(String(16))
    carrier_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None]
    outcome_code: Mapped[str | None] = mapped_column(String(32), index=True)
    carrier_result: Mapped[str | None] = mapped_column(String(64))
    refusal_reason: Mapped[str | None] = mapped_column(String(32))
    dispatch_errors: Mapped[int] = mapped_column(default=0)
    follow_up_planned: Mapped[bool] = mapped_column(default=False)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    promise_date: Mapped[date | None]
    promise_amount_yen: Mapped[int | None]
    sealed_notes: Mapped[bytes | None] = mapped_column(LargeBinary)
    identity_confirmed_at: Mapped[datetime | None]
    inbound: Mapped[bool] = mapped_column(default=False)
    payment_method: Mapped[str | None] = mapped_column(String(32))
    slip_reissue: Mapped[bool] = mapped_column(default=False)
    transfer_recommended: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandOff(Base):
    """A case handed from an operator or the IVR to city staff (R-8)."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), index=True
    )
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(32))
    sealed_notes: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[HandOffStatus] = mapped_column(
        enum_column(HandOffStatus), default=HandOffStatus.OPEN, index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sealed_staff_notes: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    taken_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class CallbackRequest(Base):
    """A resident asked, in the IVR or by SMS, to be called by an operator."""

    __tablename__ = "callback_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), index=True
    )
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    time_band: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    status: Mapped[CallbackStatus] = mapped_column(
        enum_column(CallbackStatus), default=CallbackStatus.PENDING, index=True
    )
    source: Mapped[str] = mapped_column(String(16), default="ivr")
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    operator_attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("attempts.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DoNotCall(Base):
    """A number that must not be contacted again (opt-out, 停止/STOP). Stored as a digest only."""

    __tablename__ = "do_not_call"

    id: Mapped[int] = mapped_column(primary_key=True)
    number_digest: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExclusionList(Base):
    """The arrears system's latest 除外者リスト (R-6); the dialer stops when it is stale."""

    __tablename__ = "exclusion_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[datetime]
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    entry_count: Mapped[int] = mapped_column(default=0)
    file_sha256: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True, index=True)
    note: Mapped[str | None] = mapped_column(Text)


class ExclusionEntry(Base):
    __tablename__ = "exclusion_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(
        ForeignKey("exclusion_lists.id", ondelete="CASCADE"), index=True
    )
    ref_digest: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(32))
