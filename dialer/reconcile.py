"""Start-up (and periodic) reconciliation of attempts a dead dialer process left behind.

An attempt stays ``CLAIMED`` or ``IN_PROGRESS`` when the process that claimed it died between
claiming and calling, between calling and recording, or during the call. Once such an attempt
is older than ``stale_after`` it is compared with what the carrier still has in flight
(:meth:`~dialer.ports.Carrier.active_calls`):

* its call is still active at the carrier -> left alone (the call session will finish it);
* otherwise, with no outcome recorded -> ``COMPLETED`` with ``carrier_result = "lost"``,
  counted, its pacing locks released, and its follow-up planned by the planner, which treats
  a lost call as "did not reach the person": the retry comes after the retry interval (never
  immediately, and no SMS straight away either: the lost call may have rung).

Whether the call was placed or not cannot be known for an attempt that has no carrier
reference, so the retry interval applies to both: a number is never called twice in a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dialer import followups
from dialer.clock import Clock
from dialer.pacing import release_attempt
from dialer.planner import LOST, PlanPolicy
from dialer.ports import Carrier
from kernel.aggregates import record_attempt_result
from kernel.calendar import CallingWindow
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Phone

log = logging.getLogger(__name__)
BATCH = 1000


@dataclass(frozen=True)
class ReconcileReport:
    examined: int
    still_active: int
    lost: int


def reconcile(
    database: Database,
    carrier: Carrier,
    clock: Clock,
    window: CallingWindow,
    policy: PlanPolicy,
    *,
    stale_after: timedelta,
    coordination: Coordination | None = None,
) -> ReconcileReport:
    """Mark stale claims and calls the carrier no longer has as lost; plan their retries."""
    active = set(carrier.active_calls())
    now = clock.now()
    examined = kept = lost = 0
    released: list[tuple[str, str | None]] = []
    with database.unit_of_work() as session:
        for attempt in _stale(session, carrier.name, now - stale_after):
            examined += 1
            if attempt.carrier_ref is not None and attempt.carrier_ref in active:
                kept += 1
                continue
            _mark_lost(session, attempt, now)
            followups.plan_follow_up(session, attempt, window, policy, now)
            released.append((attempt.idempotency_key, _digest(session, attempt)))
            lost += 1
    if coordination is not None:
        for owner, digest in released:
            release_attempt(coordination, carrier.name, owner, digest)
    report = ReconcileReport(examined, kept, lost)
    log.info("reconcile: examined=%d still_active=%d lost=%d", examined, kept, lost)
    return report


def _stale(session: Session, carrier_name: str, cutoff: datetime) -> list[Attempt]:
    claimed_long_ago = (Attempt.status == AttemptStatus.CLAIMED) & (Attempt.claimed_at <= cutoff)
    started_long_ago = (Attempt.status == AttemptStatus.IN_PROGRESS) & (
        Attempt.started_at <= cutoff
    )
    query = (
        select(Attempt)
        .where(
            or_(claimed_long_ago, started_long_ago),
            or_(Attempt.carrier.is_(None), Attempt.carrier == carrier_name[:16]),
        )
        .order_by(Attempt.id)
        .limit(BATCH)
    )
    return list(session.scalars(query))


def _mark_lost(session: Session, attempt: Attempt, now: datetime) -> None:
    attempt.status = AttemptStatus.COMPLETED
    if attempt.outcome_code is None:
        attempt.carrier_result = LOST
    attempt.ended_at = now
    session.flush()
    record_attempt_result(session, attempt)


def _digest(session: Session, attempt: Attempt) -> str | None:
    if attempt.phone_id is None:
        return None
    return session.scalar(select(Phone.number_digest).where(Phone.id == attempt.phone_id))
