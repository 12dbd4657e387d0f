"""PII-free daily counters, kept up to date as attempts finish (they survive every wipe).

Callers (the call-session service, the operator form, SMS status handling, letters) call
:func:`record_attempt_result` exactly once, in the same transaction, when an attempt reaches a
final status. Reports read only :class:`~kernel.models.DailyAggregate` rows, so a wiped
campaign's reports still work.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel.calendar import TOKYO
from kernel.models import Attempt, DailyAggregate


def bump(
    session: Session,
    *,
    day: date,
    campaign_id: int,
    metric: str,
    dimension: str = "total",
    by: int = 1,
) -> None:
    """Add ``by`` to one counter (created at zero when missing)."""
    row = session.scalars(
        select(DailyAggregate).where(
            DailyAggregate.day == day,
            DailyAggregate.campaign_id == campaign_id,
            DailyAggregate.dimension == dimension,
            DailyAggregate.metric == metric,
        )
    ).one_or_none()
    if row is None:
        row = DailyAggregate(
            day=day, campaign_id=campaign_id, dimension=dimension, metric=metric, value=0
        )
        session.add(row)
    row.value += by


def local_day(instant: datetime) -> date:
    """The Asia/Tokyo calendar day an instant belongs to (reports are per local day)."""
    return instant.astimezone(TOKYO).date()


def record_attempt_result(session: Session, attempt: Attempt) -> None:
    """Count one finished attempt: by channel, by outcome code and by carrier result."""
    instant = attempt.ended_at or attempt.scheduled_at
    day = local_day(instant)
    channel = attempt.channel.value
    bump(session, day=day, campaign_id=attempt.campaign_id, metric=f"attempts.{channel}")
    if attempt.outcome_code:
        metric = f"outcome.{channel}.{attempt.outcome_code}"
        bump(session, day=day, campaign_id=attempt.campaign_id, metric=metric)
    if attempt.carrier_result:
        metric = f"carrier_result.{channel}.{attempt.carrier_result}"
        bump(session, day=day, campaign_id=attempt.campaign_id, metric=metric)
    if attempt.refusal_reason:
        metric = f"refused.{attempt.refusal_reason}"
        bump(session, day=day, campaign_id=attempt.campaign_id, metric=metric)
