"""What follows a final attempt, persisted: the planner's decision turned into a new attempt.

:func:`plan_follow_ups` plans, in the caller's transaction, the next contact of each final
attempt (retry, SMS, operator call, letter; :func:`dialer.planner.next_contact`) and marks the
attempt ``follow_up_planned`` so it is planned exactly once. It reads what it needs for a whole
batch in a few queries, so the dispatcher can follow up hundreds of ended calls per tick.

A target has at most one open contact at a time: nothing is planned when the call session has
already queued one (an SMS the resident asked for) or opened a callback request that the
operators' queue serves. Targets no longer active (paid, stopped, gone) get nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from dialer.planner import (
    CALLBACK_REQUESTED,
    NO_ANSWER,
    WRONG_NUMBER,
    PastAttempt,
    PhoneView,
    PlannedContact,
    PlanPolicy,
    next_contact,
)
from kernel.calendar import CallingWindow
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Channel,
    Person,
    Phone,
    PhoneStatus,
    TargetStatus,
)

AUTOMATED = (Channel.IVR, Channel.SMS)
IN_FLIGHT = (AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)
OPEN = (AttemptStatus.SCHEDULED, *IN_FLIGHT)
#: Refusals after which the target may still be reached another way (other phone, letter).
PHONE_REFUSALS = frozenset({"do_not_call", "phone_unusable", "not_mobile"})


def plan_follow_up(
    session: Session, attempt: Attempt, window: CallingWindow, policy: PlanPolicy, now: datetime
) -> int:
    """:func:`plan_follow_ups` for one attempt (the call session may call it when it ends one)."""
    return plan_follow_ups(session, [attempt], window, policy, now)


def plan_follow_ups(
    session: Session,
    attempts: Sequence[Attempt],
    window: CallingWindow,
    policy: PlanPolicy,
    now: datetime,
) -> int:
    """Plan the next contact of each final attempt; returns how many were scheduled."""
    todo = [a for a in attempts if not a.follow_up_planned]
    if not todo:
        return 0
    _mark_planned(session, todo)
    _mark_phones(session, todo)
    person_ids = {a.person_id for a in todo if a.person_id is not None}
    active = _active_persons(session, person_ids)
    busy = _persons_with_open_contact(session, person_ids, {a.id for a in todo})
    callbacks = _with_callback_request(session, {a.id for a in todo})
    histories = histories_of(session, person_ids)
    phones = phone_views(session, person_ids)
    sequences = _last_sequences(session, person_ids)
    rows = []
    for attempt in todo:
        outcome = _planner_outcome(attempt)
        person_id = attempt.person_id
        if outcome is None or person_id not in active or person_id in busy:
            continue
        if outcome == CALLBACK_REQUESTED and attempt.id in callbacks:
            continue
        history = histories.get(person_id, [])
        contact = next_contact(outcome, history, phones.get(person_id, []), window, now, policy)
        if contact is None:
            continue
        sequences[person_id] = sequences.get(person_id, 0) + 1
        rows.append(attempt_row(attempt.campaign_id, person_id, contact, sequences[person_id]))
        busy.add(person_id)
    if rows:
        session.execute(insert(Attempt), rows)
    return len(rows)


def attempt_row(
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


def histories_of(session: Session, person_ids: set[int]) -> dict[int, list[PastAttempt]]:
    """Each target's contacts that went out (or may have: a lost claim counts from its claim)."""
    if not person_ids:
        return {}
    rows = session.execute(
        select(Attempt.person_id, Attempt.channel, Attempt.phone_id)
        .add_columns(Attempt.started_at, Attempt.claimed_at)
        .add_columns(Attempt.outcome_code, Attempt.carrier_result)
        .where(
            Attempt.person_id.in_(person_ids),
            Attempt.status.in_((AttemptStatus.COMPLETED, *IN_FLIGHT)),
            Attempt.channel.in_((*AUTOMATED, Channel.OPERATOR)),
        )
    ).tuples()
    histories: dict[int, list[PastAttempt]] = {}
    for person_id, channel, phone_id, started, claimed, outcome, result in rows:
        instant = started or claimed
        if person_id is not None and instant is not None:
            past = PastAttempt(channel, phone_id, instant, outcome or result)
            histories.setdefault(person_id, []).append(past)
    for history in histories.values():
        history.sort(key=lambda past: past.started_at)
    return histories


def phone_views(
    session: Session, person_ids: set[int] | None = None, campaign_id: int | None = None
) -> dict[int, list[PhoneView]]:
    """Each target's phones in position order, usable or not."""
    query = select(Phone.person_id, Phone.id, Phone.kind, Phone.status)
    if person_ids is not None:
        query = query.where(Phone.person_id.in_(person_ids))
    if campaign_id is not None:
        query = query.where(Phone.campaign_id == campaign_id)
    views: dict[int, list[PhoneView]] = {}
    ordered = query.order_by(Phone.person_id, Phone.position)
    for owner, phone_id, kind, status in session.execute(ordered).tuples():
        views.setdefault(owner, []).append(PhoneView(phone_id, kind, status is PhoneStatus.USABLE))
    return views


def _planner_outcome(attempt: Attempt) -> str | None:
    if attempt.status is AttemptStatus.REFUSED:
        return NO_ANSWER if attempt.refusal_reason in PHONE_REFUSALS else None
    return attempt.outcome_code or attempt.carrier_result


def _mark_planned(session: Session, attempts: list[Attempt]) -> None:
    for attempt in attempts:
        attempt.follow_up_planned = True
    session.flush()


def _mark_phones(session: Session, attempts: list[Attempt]) -> None:
    """A wrong number or an opted-out number is not tried again (for any target)."""
    for attempt in attempts:
        if attempt.phone_id is None:
            continue
        if _planner_outcome(attempt) == WRONG_NUMBER:
            _mark_phone(session, attempt.phone_id, PhoneStatus.WRONG_NUMBER)
        elif attempt.refusal_reason == "do_not_call":
            _mark_phone(session, attempt.phone_id, PhoneStatus.OPTED_OUT)


def _mark_phone(session: Session, phone_id: int, status: PhoneStatus) -> None:
    session.execute(
        update(Phone)
        .where(Phone.id == phone_id, Phone.status == PhoneStatus.USABLE)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )


def _active_persons(session: Session, person_ids: set[int]) -> set[int]:
    if not person_ids:
        return set()
    query = select(Person.id).where(Person.id.in_(person_ids), Person.status == TargetStatus.ACTIVE)
    return set(session.scalars(query))


def _persons_with_open_contact(
    session: Session, person_ids: set[int], finished: set[int]
) -> set[int]:
    if not person_ids:
        return set()
    # Filtered here, not in SQL: SQLite would otherwise walk the (status, time) index.
    query = select(Attempt.person_id, Attempt.id, Attempt.status).where(
        Attempt.person_id.in_(person_ids)
    )
    return {
        person_id
        for person_id, attempt_id, status in session.execute(query).tuples()
        if person_id is not None and status in OPEN and attempt_id not in finished
    }


def _with_callback_request(session: Session, attempt_ids: set[int]) -> set[int]:
    query = select(CallbackRequest.attempt_id).where(CallbackRequest.attempt_id.in_(attempt_ids))
    return {attempt_id for attempt_id in session.scalars(query) if attempt_id is not None}


def _last_sequences(session: Session, person_ids: set[int]) -> dict[int, int]:
    if not person_ids:
        return {}
    query = (
        select(Attempt.person_id, func.max(Attempt.sequence_no))
        .where(Attempt.person_id.in_(person_ids))
        .group_by(Attempt.person_id)
    )
    return {pid: seq or 0 for pid, seq in session.execute(query).tuples() if pid is not None}
