"""End to end on the embedded simulator: a small campaign runs over several simulated days.

Dispatcher -> SimulatedCarrier -> CallSession (the IVR flow, outcomes) -> planner follow-ups
-> ... until the campaign completes. The exclusion list is refreshed every simulated night as
the nightly sync would. Checked afterwards from the database: every contact inside the calling
window, never more than 2 per number per day, no number called twice at once, every target
finished, the campaign completed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from dialer import campaigns
from dialer.call_session import CallSession
from dialer.clock import SimulatedClock
from dialer.simulator import SimulatedCarrier
from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, CampaignStatus, Channel, Phone, PhoneKind
from tests.fakes.dialer_world import MONDAY_10, Target, World, new_number

DAYS = 14
STEP = timedelta(minutes=1)


def build_world(database: Database) -> tuple[World, SimulatedCarrier]:
    clock = SimulatedClock(MONDAY_10)
    world = World(database, clock=clock)
    sink = CallSession(database, world.coordination, world.keyring, world.settings, clock=clock)
    carrier = SimulatedCarrier(sink, clock=clock, seed=11)
    world.carrier = carrier
    return world, carrier


def next_due(world: World) -> datetime | None:
    with world.database.read_only() as session:
        return session.scalar(
            select(func.min(Attempt.scheduled_at)).where(
                Attempt.status == AttemptStatus.SCHEDULED,
                Attempt.channel.in_((Channel.IVR, Channel.SMS)),
            )
        )


def run(world: World, carrier: SimulatedCarrier, campaign_id: int) -> None:
    dispatcher = world.dispatcher("sim-worker")
    end = world.clock.now() + timedelta(days=DAYS)
    list_loaded = world.clock.now()
    while world.clock.now() < end:
        if world.clock.now() - list_loaded > timedelta(hours=20):
            world.exclusion_list()  # the nightly sync brings a fresh list
            list_loaded = world.clock.now()
        dispatcher.tick()
        carrier.run_until(world.clock.now())
        with world.database.unit_of_work() as session:
            if campaigns.complete_finished(session, "test") == [campaign_id]:
                return
        world.clock.advance(_step(world, carrier))


def _step(world: World, carrier: SimulatedCarrier) -> timedelta:
    """One minute while calls are live; otherwise jump to the next thing that happens."""
    if carrier.active_calls():
        return STEP
    upcoming = [t for t in (next_due(world), carrier.next_due()) if t is not None]
    if not upcoming:
        return timedelta(hours=1)
    return max(STEP, min(upcoming) - world.clock.now())


@pytest.mark.parametrize("seed_targets", [24])
def test_a_small_campaign_runs_to_completion_over_simulated_days(
    database: Database, seed_targets: int
) -> None:
    world, carrier = build_world(database)
    world.exclusion_list()
    household = new_number(PhoneKind.FIXED_LINE)
    targets = [Target() for _ in range(seed_targets - 3)]
    targets += [Target(numbers=[(new_number(PhoneKind.FIXED_LINE), PhoneKind.FIXED_LINE)])]
    targets += [Target(numbers=[(household, PhoneKind.FIXED_LINE)]) for _ in range(2)]
    campaign_id = world.campaign(targets)

    run(world, carrier, campaign_id)

    with world.database.read_only() as session:
        status = campaigns.get_campaign(session, campaign_id).status
        rows = session.execute(
            select(Attempt, Phone.number_digest).outerjoin(Phone, Phone.id == Attempt.phone_id)
        ).all()
    assert status is CampaignStatus.COMPLETED
    contacts = [
        (attempt, digest)
        for attempt, digest in rows
        if attempt.started_at is not None and attempt.channel in (Channel.IVR, Channel.SMS)
    ]
    assert contacts, "the simulator answered nothing"
    for attempt, _digest in contacts:
        assert world.window.is_open(attempt.started_at)
    per_day = Counter(
        (digest, attempt.started_at.astimezone(TOKYO).date()) for attempt, digest in contacts
    )
    assert max(per_day.values()) <= 2
    calls = sorted(
        (a for a, _ in contacts if a.channel is Channel.IVR and a.ended_at is not None),
        key=lambda a: a.started_at,
    )
    by_number: dict[str, list[Attempt]] = {}
    for attempt, digest in contacts:
        if attempt.channel is Channel.IVR:
            by_number.setdefault(digest, []).append(attempt)
    for same_number in by_number.values():
        ordered = sorted(same_number, key=lambda a: a.started_at)
        for earlier, later in zip(ordered, ordered[1:], strict=False):
            assert earlier.ended_at is not None and later.started_at >= earlier.ended_at
    assert calls
    assert all(a.status is not AttemptStatus.IN_PROGRESS for a, _ in rows)
    outcomes = Counter(a.outcome_code or a.carrier_result for a, _ in rows)
    assert outcomes["rpc_confirmed"] + outcomes.get("rpc_promise_callback", 0) > 0
