"""Campaign life cycle: draft -> ready -> running <-> paused -> completed -> exported -> wiped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from dialer.planner import (
    CALLBACK_REQUESTED,
    NO_ANSWER,
    WRONG_NUMBER,
    PastAttempt,
    PhoneView,
    PlannedContact,
    PlanPolicy,
    first_contact,
    next_contact,
)
from kernel import audit
from kernel.calendar import CallingWindow
from kernel.errors import Conflict, NotFound
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Campaign,
    CampaignStatus,
    Channel,
    Person,
    Phone,
    PhoneStatus,
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
    phones = _phone_views(session, campaign.id)
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
            rows.append(_attempt_row(campaign.id, person_id, contact, 1))
    for chunk in _chunks(rows):
        session.execute(insert(Attempt), chunk)
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


AUTOMATED = (Channel.IVR, Channel.SMS)
IN_FLIGHT = (AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)


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
            Attempt.follow_up_planned.is_(False),
        ),
    )
    query = select(Attempt.id).where(Attempt.campaign_id == campaign_id, pending).limit(1)
    return session.scalars(query).first() is not None


# --------------------------------------------------------------------------- follow-ups

#: Refusals after which the target may still be reached another way (other phone, letter).
PHONE_REFUSALS = frozenset({"do_not_call", "phone_unusable", "not_mobile"})


def plan_follow_up(
    session: Session,
    attempt: Attempt,
    window: CallingWindow,
    policy: PlanPolicy,
    now: datetime,
) -> Attempt | None:
    """Schedule what follows a final attempt (retry, SMS, operator, letter), in the caller's
    transaction; marks the attempt as followed up so it is planned exactly once."""
    if attempt.follow_up_planned:
        return None
    attempt.follow_up_planned = True
    outcome = _planner_outcome(attempt)
    person = session.get(Person, attempt.person_id) if attempt.person_id else None
    if outcome is None or person is None or person.status is not TargetStatus.ACTIVE:
        return None
    if _already_planned(session, attempt, outcome):
        return None
    if attempt.phone_id is not None:
        if outcome == WRONG_NUMBER:
            _mark_phone(session, attempt.phone_id, PhoneStatus.WRONG_NUMBER)
        elif attempt.refusal_reason == "do_not_call":
            _mark_phone(session, attempt.phone_id, PhoneStatus.OPTED_OUT)
    history = history_of(session, person.id)
    phones = _phone_views(session, attempt.campaign_id, person.id).get(person.id, [])
    contact = next_contact(outcome, history, phones, window, now, policy)
    if contact is None:
        return None
    sequence = _last_sequence(session, person.id) + 1
    follow_up = Attempt(**_attempt_row(attempt.campaign_id, person.id, contact, sequence))
    session.add(follow_up)
    return follow_up


def _already_planned(session: Session, attempt: Attempt, outcome: str) -> bool:
    """One open contact per target at a time: the call session may have queued an SMS the
    resident asked for, or a callback request the operators' queue serves."""
    open_attempt = select(Attempt.id).where(
        Attempt.person_id == attempt.person_id,
        Attempt.id != attempt.id,
        Attempt.status.in_((AttemptStatus.SCHEDULED, *IN_FLIGHT)),
    )
    if session.scalars(open_attempt.limit(1)).first() is not None:
        return True
    if outcome != CALLBACK_REQUESTED:
        return False
    callback = select(CallbackRequest.id).where(CallbackRequest.attempt_id == attempt.id)
    return session.scalars(callback.limit(1)).first() is not None


def _planner_outcome(attempt: Attempt) -> str | None:
    if attempt.status is AttemptStatus.REFUSED:
        return NO_ANSWER if attempt.refusal_reason in PHONE_REFUSALS else None
    return attempt.outcome_code or attempt.carrier_result


def history_of(session: Session, person_id: int) -> list[PastAttempt]:
    """The target's contacts that went out (or may have: a lost claim counts from its claim)."""
    rows = session.execute(
        select(Attempt.channel, Attempt.phone_id, Attempt.started_at, Attempt.claimed_at)
        .add_columns(Attempt.outcome_code, Attempt.carrier_result)
        .where(
            Attempt.person_id == person_id,
            Attempt.status.in_((AttemptStatus.COMPLETED, *IN_FLIGHT)),
            Attempt.channel.in_((*AUTOMATED, Channel.OPERATOR)),
        )
    ).tuples()
    history = [
        PastAttempt(channel, phone_id, started or claimed, outcome or result)
        for channel, phone_id, started, claimed, outcome, result in rows
        if (started or claimed) is not None
    ]
    return sorted(history, key=lambda past: past.started_at)


def _phone_views(
    session: Session, campaign_id: int, person_id: int | None = None
) -> dict[int, list[PhoneView]]:
    query = select(Phone.person_id, Phone.id, Phone.kind, Phone.status).where(
        Phone.campaign_id == campaign_id
    )
    if person_id is not None:
        query = query.where(Phone.person_id == person_id)
    views: dict[int, list[PhoneView]] = {}
    for owner, phone_id, kind, status in session.execute(
        query.order_by(Phone.person_id, Phone.position)
    ).tuples():
        views.setdefault(owner, []).append(PhoneView(phone_id, kind, status is PhoneStatus.USABLE))
    return views


def _mark_phone(session: Session, phone_id: int, status: PhoneStatus) -> None:
    phone = session.get(Phone, phone_id)
    if phone is not None and phone.status is PhoneStatus.USABLE:
        phone.status = status


def _last_sequence(session: Session, person_id: int) -> int:
    query = select(func.max(Attempt.sequence_no)).where(Attempt.person_id == person_id)
    return session.scalar(query) or 0


def _attempt_row(
    campaign_id: int, person_id: int, contact: PlannedContact, sequence: int
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "person_id": person_id,
        "phone_id": contact.phone_id,
        "channel": contact.channel,
        "sequence_no": sequence,
        "status": AttemptStatus.SCHEDULED,
        "scheduled_at": contact.not_before,
        "idempotency_key": f"c{campaign_id}-p{person_id}-{sequence}-{uuid.uuid4().hex[:16]}",
    }


def _chunks(rows: list[dict[str, Any]], size: int = 2000) -> list[list[dict[str, Any]]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


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
