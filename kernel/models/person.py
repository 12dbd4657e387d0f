"""Targets of a campaign: the person, their phones and their receivables.

Every personal value lives sealed (AES-GCM under the campaign's data key, see ``kernel.pii``)
in the ``sealed_*`` columns; the other columns hold only what the dialer and the reports need
to decide without reading who the person is.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel.models.base import Base, enum_column, utcnow
from kernel.models.enums import Channel, PhoneKind, PhoneStatus, TargetStatus


class Person(Base):
    """One resident (名寄せ by 宛名番号) targeted by one campaign."""

    __tablename__ = "persons"
    __table_args__ = (
        Index("ix_persons_campaign_ref", "campaign_id", "ref_digest", unique=True),
        # Every status query names the campaign; this index also serves campaign_id alone.
        Index("ix_persons_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("import_batches.id"))
    ref_digest: Mapped[str] = mapped_column(String(64))
    sealed_pii: Mapped[bytes] = mapped_column(LargeBinary)
    has_kana: Mapped[bool] = mapped_column(default=False)
    language: Mapped[str] = mapped_column(String(8), default="ja")
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    status: Mapped[TargetStatus] = mapped_column(
        enum_column(TargetStatus), default=TargetStatus.ACTIVE
    )
    unpaid_total_yen: Mapped[int] = mapped_column(default=0)
    paid_on: Mapped[date | None]
    paid_yen: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    phones: Mapped[list[Phone]] = relationship(
        back_populates="person", cascade="all, delete-orphan", order_by="Phone.position"
    )
    receivables: Mapped[list[Receivable]] = relationship(
        back_populates="person", cascade="all, delete-orphan"
    )


class Phone(Base):
    """A phone number of a person, stored as sealed E.164 plus a keyed digest for lookups."""

    __tablename__ = "phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    position: Mapped[int] = mapped_column(default=1)
    sealed_number: Mapped[bytes] = mapped_column(LargeBinary)
    number_digest: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[PhoneKind] = mapped_column(enum_column(PhoneKind))
    verified_on: Mapped[date | None]
    status: Mapped[PhoneStatus] = mapped_column(
        enum_column(PhoneStatus), default=PhoneStatus.USABLE
    )
    shared_household: Mapped[bool] = mapped_column(default=False)

    person: Mapped[Person] = relationship(back_populates="phones")


class Receivable(Base):
    """One unpaid item: 債権種別 x 年度 x 期別."""

    __tablename__ = "receivables"
    __table_args__ = (
        Index("ix_receivables_item", "person_id", "kind", "fiscal_year", "period", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    department: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    fiscal_year: Mapped[int]
    period: Mapped[str] = mapped_column(String(16))
    sealed_notice_number: Mapped[bytes | None] = mapped_column(LargeBinary)
    due_date: Mapped[date]
    unpaid_yen: Mapped[int]
    late_fee_yen: Mapped[int] = mapped_column(default=0)
    demand_date: Mapped[date | None]
    installment: Mapped[str | None] = mapped_column(String(16))
    account_transfer: Mapped[bool] = mapped_column(default=False)

    person: Mapped[Person] = relationship(back_populates="receivables")
