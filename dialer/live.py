"""Live figures for the supervisor's dashboard, shared through the Coordination port.

Operators' states (idle, on a call, wrap-up) live as short-lived coordination state, so every
web process sees them and a closed browser simply ages out. Anything that changes the figures
publishes a tiny PII-free message on :data:`LIVE_CHANNEL`; dashboards listening there refresh
at once instead of waiting for their next periodic refresh. The snapshot itself is computed
from the database (campaign progress, calls in flight, queues, today's aggregates).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.campaigns import STATUS_LABELS_JA
from kernel.aggregates import local_day
from kernel.calendar import TOKYO
from kernel.coordination import Coordination, CoordinationUnavailable, JSONValue
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    CallbackStatus,
    Campaign,
    CampaignStatus,
    Channel,
    DailyAggregate,
    HandOff,
    HandOffStatus,
    Person,
    Role,
    User,
    utcnow,
)

LIVE_CHANNEL = "console.live"
STATE_PREFIX = "operator-state:"
STATE_TTL_SECONDS = 15 * 60.0
OPERATOR_STATES = ("idle", "on_call", "wrap_up", "away")
TODAY_METRICS = ("promise", "paid_claimed", "consultation", "rpc_confirmed", "no_answer")


@dataclass(frozen=True)
class OperatorState:
    user_id: int
    name: str
    state: str
    since: str


def set_operator_state(
    coordination: Coordination, user_id: int, state: str, now: datetime | None = None
) -> None:
    if state not in OPERATOR_STATES:
        raise ValueError(f"unknown operator state {state!r}")
    since = (now or utcnow()).astimezone(TOKYO).strftime("%H:%M")
    record = json.dumps({"state": state, "since": since})
    try:  # best effort, like the events: the dashboard shows "offline" until the next change
        coordination.put_state(f"{STATE_PREFIX}{user_id}", record, STATE_TTL_SECONDS)
    except CoordinationUnavailable:
        return
    notify(coordination, "operator_state")


def operator_states(
    coordination: Coordination, operators: Sequence[tuple[int, str]]
) -> list[OperatorState]:
    """Each operator's last reported state; ``offline`` when none is current."""
    states = []
    for user_id, name in operators:
        raw = coordination.get_state(f"{STATE_PREFIX}{user_id}")
        record = json.loads(raw) if raw else {"state": "offline", "since": ""}
        states.append(OperatorState(user_id, name, str(record["state"]), str(record["since"])))
    return states


def notify(coordination: Coordination, kind: str) -> None:
    """Tell dashboards that figures changed (best effort: a dashboard also polls)."""
    try:
        coordination.publish(LIVE_CHANNEL, {"kind": kind})
    except CoordinationUnavailable:
        return


def _active_operators(session: Session) -> list[tuple[int, str]]:
    rows = session.execute(
        select(User.id, User.display_name)
        .where(User.role == Role.OPERATOR, User.active.is_(True))
        .order_by(User.display_name, User.id)
    ).tuples()
    return list(rows.all())


def _in_flight(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Attempt.channel, func.count())
        .where(Attempt.status.in_((AttemptStatus.IN_PROGRESS, AttemptStatus.CLAIMED)))
        .group_by(Attempt.channel)
    ).tuples()
    counts = {channel.value: 0 for channel in (Channel.IVR, Channel.OPERATOR, Channel.SMS)}
    counts.update({channel.value: count for channel, count in rows})
    return counts


def queue_counts(session: Session, now: datetime) -> dict[str, int]:
    def count(query: object) -> int:
        return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    return {
        "operator_waiting": count(
            select(func.count())
            .select_from(Attempt)
            .where(
                Attempt.channel == Channel.OPERATOR,
                Attempt.status == AttemptStatus.SCHEDULED,
                Attempt.scheduled_at <= now,
            )
        ),
        "callbacks_due": count(
            select(func.count())
            .select_from(CallbackRequest)
            .where(CallbackRequest.status == CallbackStatus.PENDING, CallbackRequest.due_at <= now)
        ),
        "handoffs_open": count(
            select(func.count()).select_from(HandOff).where(HandOff.status == HandOffStatus.OPEN)
        ),
    }


def _today(session: Session, now: datetime) -> dict[str, int]:
    """Today's (Asia/Tokyo) counters from the PII-free aggregates."""
    day = local_day(now)
    rows = session.execute(
        select(DailyAggregate.metric, func.sum(DailyAggregate.value))
        .where(DailyAggregate.day == day, DailyAggregate.dimension == "total")
        .group_by(DailyAggregate.metric)
    ).tuples()
    totals: dict[str, int] = {"attempts": 0, "handoffs": 0, **dict.fromkeys(TODAY_METRICS, 0)}
    for metric, value in rows:
        parts = metric.split(".")
        if parts[0] == "attempts":
            totals["attempts"] += int(value or 0)
            totals[f"attempts_{parts[-1]}"] = totals.get(f"attempts_{parts[-1]}", 0) + int(
                value or 0
            )
        elif parts[0] == "outcome" and parts[-1] in TODAY_METRICS:
            totals[parts[-1]] += int(value or 0)
        elif metric == "handoffs":
            totals["handoffs"] = int(value or 0)
    return totals


@dataclass(frozen=True)
class CampaignProgress:
    id: int
    name: str
    status: CampaignStatus
    targets: int
    open: int
    done: int

    @property
    def status_ja(self) -> str:
        return STATUS_LABELS_JA[self.status]


OPEN_ATTEMPTS = (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)


def campaign_progress(session: Session) -> list[CampaignProgress]:
    """Every campaign with its targets and open / finished attempts (three grouped queries)."""
    targets = dict(
        session.execute(select(Person.campaign_id, func.count()).group_by(Person.campaign_id))
        .tuples()
        .all()
    )
    attempts: dict[tuple[int, bool], int] = {}
    is_open = Attempt.status.in_(OPEN_ATTEMPTS)
    for campaign_id, still_open, count in session.execute(
        select(Attempt.campaign_id, is_open, func.count()).group_by(Attempt.campaign_id, is_open)
    ).tuples():
        attempts[(campaign_id, bool(still_open))] = count
    campaigns = session.execute(
        select(Campaign.id, Campaign.name, Campaign.status).order_by(Campaign.id)
    ).tuples()
    return [
        CampaignProgress(
            campaign_id,
            name,
            status,
            targets.get(campaign_id, 0),
            attempts.get((campaign_id, True), 0),
            attempts.get((campaign_id, False), 0),
        )
        for campaign_id, name, status in campaigns
    ]


def snapshot(session: Session, coordination: Coordination, now: datetime) -> dict[str, JSONValue]:
    """Everything the dashboard shows, as plain JSON (no personal data)."""
    campaigns: list[JSONValue] = [
        {
            "id": c.id,
            "name": c.name,
            "status": c.status.value,
            "status_ja": c.status_ja,
            "targets": c.targets,
            "open": c.open,
            "done": c.done,
        }
        for c in campaign_progress(session)
    ]
    operators: list[JSONValue] = [
        asdict(state) for state in operator_states(coordination, _active_operators(session))
    ]
    return {
        "at": now.astimezone(TOKYO).strftime("%H:%M:%S"),
        "campaigns": campaigns,
        "in_flight": dict(_in_flight(session)),
        "queues": dict(queue_counts(session, now)),
        "today": dict(_today(session, now)),
        "operators": operators,
    }
