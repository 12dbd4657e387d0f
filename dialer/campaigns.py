"""Campaign life cycle: draft -> ready -> running <-> paused -> completed -> exported -> wiped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, insert, or_, select, update
from sqlalchemy.orm import Session

from dialer.followups import AUTOMATED, IN_FLIGHT, attempt_row, phone_views
from dialer.planner import PlanPolicy, first_contact
from kernel import aggregates, audit
from kernel.calendar import CallingWindow
from kernel.errors import Conflict, NotFound
from kernel.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Person,
    TargetStatus,
    utcnow,
)
from kernel.settings import DialerSettings

TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.READY}),
    CampaignStatus.READY: frozenset({CampaignStatus.RUNNING, CampaignStatus.DRAFT}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.COMPLETED}),
    CampaignStatus.COMPLETED: frozenset({CampaignStatus.EXPORTED}),
    CampaignStatus.EXPORTED: frozenset({CampaignStatus.WIPED}),
    CampaignStatus.WIPED: frozenset(),
}

STATUS_LABELS_JA: dict[CampaignStatus, str] = {
    CampaignStatus.DRAFT: "下書き",
    CampaignStatus.READY: "準備完了",
    CampaignStatus.RUNNING: "実行中",
    CampaignStatus.PAUSED: "一時停止",
    CampaignStatus.COMPLETED: "完了",
    CampaignStatus.EXPORTED: "結果出力済",
    CampaignStatus.WIPED: "消去済",
}


def can_move(current: CampaignStatus, target: CampaignStatus) -> bool:
    return target in TRANSITIONS[current]


def check_move(current: CampaignStatus, target: CampaignStatus) -> None:
    if not can_move(current, target):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise Conflict(
            f"campaign cannot move from {current.value} to {target.value} (allowed: {allowed})"
        )


def get_campaign(session: Session, campaign_id: int, *, for_update: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalars(query).first()
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return campaign


def move(session: Session, campaign_id: int, target: CampaignStatus, actor: str) -> Campaign:
    """Change a campaign's status if the life cycle allows it; audited."""
    campaign = get_campaign(session, campaign_id, for_update=True)
    previous = campaign.status
    check_move(previous, target)
    campaign.status = target
    _stamp(campaign, target, utcnow())
    audit.record(
        session,
        actor=actor,
        action=f"campaign.{target.value}",
        object_type="campaign",
        object_id=campaign.id,
        detail={"from": previous.value, "to": target.value},
    )
    return campaign


def _stamp(campaign: Campaign, target: CampaignStatus, now: datetime) -> None:
    if target is CampaignStatus.RUNNING and campaign.started_at is None:
        campaign.started_at = now
    elif target is CampaignStatus.COMPLETED:
        campaign.completed_at = now
    elif target is CampaignStatus.EXPORTED:
        campaign.exported_at = now
    elif target is CampaignStatus.WIPED:
        campaign.wiped_at = now


@dataclass(frozen=True)
class CampaignOverview:
    id: int
    name: str
    status: CampaignStatus
    targets: int
    attempts_open: int
    attempts_done: int

    @property
    def status_ja(self) -> str:
        return STATUS_LABELS_JA[self.status]


def overview(session: Session, campaign: Campaign) -> CampaignOverview:
    targets = session.scalar(
        select(func.count()).select_from(Person).where(Person.campaign_id == campaign.id)
    )
    open_statuses = (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)
    counts: dict[bool, int] = {}
    rows = session.execute(
        select(Attempt.status, func.count())
        .where(Attempt.campaign_id == campaign.id)
        .group_by(Attempt.status)
    ).tuples()
    for status, count in rows:  # (a Result has .keys(): dict(result) would misread it)
        is_open = status in open_statuses
        counts[is_open] = counts.get(is_open, 0) + count
    return CampaignOverview(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        targets=targets or 0,
        attempts_open=counts.get(True, 0),
        attempts_done=counts.get(False, 0),
    )


def list_campaigns(session: Session) -> list[CampaignOverview]:
    campaigns = session.scalars(select(Campaign).order_by(Campaign.id)).all()
    return [overview(session, campaign) for campaign in campaigns]


# --------------------------------------------------------------------------- services


def plan_policy(dialer: DialerSettings) -> PlanPolicy:
    return PlanPolicy(
        max_attempts_per_day=dialer.max_attempts_per_day,
        max_attempts_per_week=dialer.max_attempts_per_week,
        busy_retry=timedelta(minutes=dialer.busy_retry_minutes),
        no_answer_retry=timedelta(hours=dialer.no_answer_retry_hours),
    )


def prepare(
    session: Session, campaign_id: int, window: CallingWindow, now: datetime, actor: str
) -> int:
    """draft -> ready: plan every active target's first contact; returns attempts created.

    Targets that already have an attempt (a campaign sent back to draft and readied again)
    keep theirs, so readying twice never doubles a contact.
    """
    campaign = move(session, campaign_id, CampaignStatus.READY, actor)
    planned = set(
        session.scalars(select(Attempt.person_id).where(Attempt.campaign_id == campaign.id))
    )
    phones = phone_views(session, campaign_id=campaign.id)
    rows = []
    persons = session.execute(
        select(Person.id, Person.channel).where(
            Person.campaign_id == campaign.id, Person.status == TargetStatus.ACTIVE
        )
    ).tuples()
    for person_id, channel in persons:
        if person_id in planned:
            continue
        contact = first_contact(channel, phones.get(person_id, []), window, now)
        if contact is not None:
            rows.append(attempt_row(campaign.id, person_id, contact, 1))
    for chunk in _chunks(rows):
        session.execute(insert(Attempt), chunk)
    aggregates.record_targets_loaded(session, campaign.id, now)  # the reports' target counts
    audit.record(
        session,
        actor=actor,
        action="campaign.planned",
        object_type="campaign",
        object_id=campaign.id,
        detail={"attempts": len(rows)},
    )
    return len(rows)


def close(session: Session, campaign_id: int, actor: str) -> int:
    """running/paused -> completed: cancel what is still only scheduled; returns how many."""
    campaign = move(session, campaign_id, CampaignStatus.COMPLETED, actor)
    result = session.execute(
        update(Attempt)
        .where(Attempt.campaign_id == campaign.id, Attempt.status == AttemptStatus.SCHEDULED)
        .values(status=AttemptStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def complete_finished(session: Session, actor: str = "scheduler") -> list[int]:
    """Running campaigns with no automated contact left to make (nothing scheduled, in flight
    or awaiting its follow-up plan) become completed; returns their ids."""
    running = session.scalars(
        select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)
    ).all()
    done = [cid for cid in running if not _has_automated_work(session, cid)]
    for campaign_id in done:
        move(session, campaign_id, CampaignStatus.COMPLETED, actor)
    return done


def _has_automated_work(session: Session, campaign_id: int) -> bool:
    pending = or_(
        and_(Attempt.status == AttemptStatus.SCHEDULED, Attempt.channel.in_(AUTOMATED)),
        Attempt.status.in_(IN_FLIGHT),
        and_(
            Attempt.status.in_((AttemptStatus.COMPLETED, AttemptStatus.REFUSED)),
            Attempt.channel.in_(AUTOMATED),
            Attempt.follow_up_planned == false(),
        ),
    )
    query = select(Attempt.id).where(Attempt.campaign_id == campaign_id, pending).limit(1)
    return session.scalars(query).first() is not None


# --------------------------------------------------------------------------- commands

_VERBS: dict[str, tuple[CampaignStatus, CampaignStatus]] = {
    "start": (CampaignStatus.READY, CampaignStatus.RUNNING),
    "pause": (CampaignStatus.RUNNING, CampaignStatus.PAUSED),
    "resume": (CampaignStatus.PAUSED, CampaignStatus.RUNNING),
}


def command(session: Session, campaign_id: int, verb: str, actor: str) -> Campaign:
    """start (ready -> running), pause (running -> paused), resume (paused -> running)."""
    expected, target = _VERBS[verb]
    current = get_campaign(session, campaign_id).status
    if current is not expected:
        raise Conflict(f"campaign {campaign_id} is {current.value}; {verb} needs {expected.value}")
    return move(session, campaign_id, target, actor)


def attempt_counts(session: Session, campaign_id: int) -> dict[str, dict[str, int]]:
    """Attempts by channel and status, and refusals by reason (counts only)."""
    by_status: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(Attempt.channel, Attempt.status, func.count())
        .where(Attempt.campaign_id == campaign_id)
        .group_by(Attempt.channel, Attempt.status)
    ).tuples()
    for channel, status, count in rows:
        by_status.setdefault(channel.value, {})[status.value] = count
    refusals = session.execute(
        select(Attempt.refusal_reason, func.count())
        .where(Attempt.campaign_id == campaign_id, Attempt.refusal_reason.is_not(None))
        .group_by(Attempt.refusal_reason)
    ).tuples()
    by_status["refused_by_reason"] = {str(reason): count for reason, count in refusals}
    return by_status


def _chunks(rows: list[dict[str, Any]], size: int = 2000) -> list[list[dict[str, Any]]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]
