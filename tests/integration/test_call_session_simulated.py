"""The simulator's statistical residents against the real CallSession: many calls, any path.

Every placed call must end with a completed, counted attempt, whatever the residents did
(transfers, callbacks, SMS requests, second factors, hang-ups, silence), and no call state may
be left behind in coordination.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import select

from dialer.call_session import OPERATORS_FREE_KEY, CallSession
from dialer.clock import SimulatedClock
from dialer.ports import CallRequest
from dialer.simulator import SimulatedCarrier
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Channel, DailyAggregate, DisclosureLevel
from kernel.pii import KeyRing
from kernel.settings import load_settings
from tests.contract.seed import CALLER_ID, MASTER_SECRET, RESIDENT_E164, seed_campaign

SATURDAY_7PM = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
CALLS = 120


def test_a_simulated_batch_of_calls_finishes_every_attempt(database: Database) -> None:
    keyring = KeyRing(MASTER_SECRET)
    names = [f"call-{i}" for i in range(CALLS)]
    seeded = seed_campaign(database, keyring, names, disclosure=DisclosureLevel.DETAIL)
    coordination = LocalCoordination()
    coordination.put_state(OPERATORS_FREE_KEY, "3", 3600)
    clock = SimulatedClock(SATURDAY_7PM)
    settings = load_settings(environment="demo", database_url=database.url)
    sink = CallSession(database, coordination, keyring, settings, clock=clock)
    carrier = SimulatedCarrier(sink, clock=clock, seed=11)
    for name in names:
        key = seeded.attempt_keys[name]
        request = CallRequest(seeded.attempt_ids[name], key, RESIDENT_E164, CALLER_ID, 30)
        assert carrier.place_call(request).accepted
    while (due := carrier.next_due()) is not None:
        clock.set(due)
        carrier.run_due()

    with database.read_only() as session:
        calls = session.scalars(select(Attempt).where(Attempt.channel == Channel.IVR)).all()
        counted = session.scalar(
            select(DailyAggregate.value).where(
                DailyAggregate.metric == "attempts.ivr", DailyAggregate.dimension == "total"
            )
        )
    assert len(calls) == CALLS
    assert all(a.status is AttemptStatus.COMPLETED and a.carrier_result for a in calls)
    assert counted == CALLS
    answered = [a for a in calls if a.answered_at is not None]
    assert answered and all(a.outcome_code for a in answered)
    assert len(Counter(a.outcome_code for a in answered)) >= 4
    assert coordination.delete_state_prefix(f"ivr:{seeded.campaign_id}:") == 0
    assert dict(sink.warnings) == {}
