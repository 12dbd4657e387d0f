"""Faults: carrier errors, Redis or the database lost mid-tick, the clock jumping, a campaign
paused mid-tick, a stale exclusion list or a payment arriving mid-tick, concurrent ticks."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from dialer import campaigns
from dialer.dispatcher import Dispatcher, TickReport
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    CampaignStatus,
    Channel,
    Person,
    PhoneKind,
    TargetStatus,
)
from tests.fakes.dialer_world import (
    SwitchableCoordination,
    Target,
    World,
    finish_call,
    new_number,
)
from tests.fakes.fake_carrier import CarrierTimeout


@pytest.fixture
def world(database: Database) -> World:
    built = World(database)
    built.exclusion_list()
    return built


def attempts(world: World) -> list[Attempt]:
    with world.database.read_only() as session:
        return list(session.scalars(select(Attempt).order_by(Attempt.id)))


def fixed_line_target() -> Target:
    return Target(numbers=[(new_number(PhoneKind.FIXED_LINE), PhoneKind.FIXED_LINE)])


def with_checkpoint(world: World, at: str, index: int, action: Any, **kw: Any) -> Dispatcher:
    """A dispatcher that runs ``action`` when it reaches ``at`` for its ``index``-th attempt."""
    seen: list[int] = []

    def checkpoint(point: str, attempt_id: int) -> None:
        if point != at:
            return
        seen.append(attempt_id)
        if len(seen) == index:
            action()

    kw.setdefault("check_chunk", 1)  # interlocks read just before each contact
    dispatcher = world.dispatcher(**kw)
    dispatcher._checkpoint = checkpoint
    return dispatcher


# ---------------------------------------------------------------------------- carrier errors


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("503", id="5xx"),
        pytest.param("429", id="429"),
        pytest.param("timeout", id="timeout"),
    ],
)
def test_carrier_errors_reschedule_with_backoff_and_call_once(world: World, fault: str) -> None:
    world.campaign([fixed_line_target()])
    if fault == "timeout":
        world.fake.fail_next(CarrierTimeout("read timed out"))
    else:
        world.fake.fail_next(world.fake.server_error(int(fault)))
    dispatcher = world.dispatcher()

    report = dispatcher.tick()

    assert report.carrier_errors == 1 and world.fake.calls == []
    (attempt,) = attempts(world)
    assert attempt.status is AttemptStatus.SCHEDULED and attempt.dispatch_errors == 1
    assert attempt.scheduled_at == world.clock.now() + timedelta(seconds=60)

    world.clock.advance(timedelta(seconds=30))
    assert dispatcher.tick().claimed == 0
    world.clock.advance(timedelta(seconds=31))
    assert dispatcher.tick().placed == 1
    assert len(world.fake.calls) == 1


def test_backoff_doubles_and_gives_up_after_the_configured_errors(world: World) -> None:
    world.campaign([fixed_line_target()])
    world.fake.fail_next(*[world.fake.server_error(503) for _ in range(3)])
    dispatcher = world.dispatcher(max_dispatch_errors=3)
    gaps = []
    for _ in range(3):
        before = world.clock.now()
        dispatcher.tick()
        first = attempts(world)[0]
        gaps.append(first.scheduled_at - before)
        world.clock.set(max(first.scheduled_at, world.clock.now()))
    assert gaps[:2] == [timedelta(seconds=60), timedelta(seconds=120)]
    first, retry = attempts(world)
    assert first.status is AttemptStatus.COMPLETED and first.carrier_result == "carrier_error"
    assert retry.channel is Channel.IVR and retry.status is AttemptStatus.SCHEDULED
    assert world.fake.calls == []


def test_a_permanent_refusal_is_final_not_retried(world: World) -> None:
    world.campaign([fixed_line_target()])
    world.fake.fail_next(world.fake.server_error(400))
    world.dispatcher().tick()
    first = attempts(world)[0]
    assert first.status is AttemptStatus.COMPLETED and first.carrier_result == "rejected:400"


def test_a_timeout_after_the_carrier_accepted_never_makes_a_second_call(world: World) -> None:
    world.campaign([fixed_line_target()])
    world.fake.raise_after_accept = True
    dispatcher = world.dispatcher()
    dispatcher.tick()
    assert len(world.fake.calls) == 1
    world.fake.raise_after_accept = False
    world.clock.advance(timedelta(minutes=2))
    report = dispatcher.tick()  # retried with the same idempotency key: the carrier dedupes
    assert report.placed == 1 and len(world.fake.calls) == 1
    (attempt,) = attempts(world)
    assert attempt.status is AttemptStatus.IN_PROGRESS
    assert attempt.carrier_ref == world.fake.calls[0].carrier_ref


# ---------------------------------------------------------------------------- infrastructure


def test_redis_lost_mid_tick_stops_dialing_and_hands_the_claims_back(database: Database) -> None:
    switch = SwitchableCoordination()
    world = World(database, coordination=switch)  # type: ignore[arg-type]
    world.exclusion_list()
    world.campaign([fixed_line_target() for _ in range(4)])

    def redis_goes_away() -> None:
        switch.down = True

    dispatcher = with_checkpoint(world, "claimed", 2, redis_goes_away)
    report = dispatcher.tick()

    assert report.stopped == "CoordinationUnavailable"
    assert report.placed == 1 and len(world.fake.calls) == 1
    assert report.handed_back == 3
    statuses = [a.status for a in attempts(world)]
    assert statuses.count(AttemptStatus.SCHEDULED) == 3

    assert dispatcher.tick().stopped == "CoordinationUnavailable"  # still down: nothing dialed
    assert len(world.fake.calls) == 1
    switch.down = False
    assert dispatcher.tick().placed == 3


def test_database_lost_mid_tick_stops_the_tick(world: World) -> None:
    world.campaign([fixed_line_target() for _ in range(3)])

    def database_goes_away() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    dispatcher = with_checkpoint(world, "claimed", 2, database_goes_away)
    report = dispatcher.tick()

    assert report.stopped == "OperationalError"
    assert report.placed == 1 and len(world.fake.calls) == 1
    assert report.handed_back == 2  # the database came back for the hand-back in this test


def test_a_campaign_paused_mid_tick_dials_nothing_more(world: World) -> None:
    campaign_id = world.campaign([fixed_line_target() for _ in range(3)])

    def pause() -> None:
        with world.database.unit_of_work() as session:
            campaigns.move(session, campaign_id, CampaignStatus.PAUSED, "supervisor")

    report = with_checkpoint(world, "claimed", 2, pause).tick()

    assert report.placed == 1 and report.postponed["campaign_not_running"] == 2
    assert [a.status for a in attempts(world)].count(AttemptStatus.SCHEDULED) == 2
    assert world.dispatcher().tick().claimed == 0  # paused: nothing is claimed

    with world.database.unit_of_work() as session:
        campaigns.move(session, campaign_id, CampaignStatus.RUNNING, "supervisor")
    assert world.dispatcher().tick().placed == 2


def test_an_exclusion_list_going_stale_mid_tick_stops_the_rest(world: World) -> None:
    world.campaign([fixed_line_target() for _ in range(3)])

    def a_day_passes() -> None:
        world.clock.advance(timedelta(hours=24))

    report = with_checkpoint(world, "claimed", 2, a_day_passes).tick()

    assert report.placed == 1 and report.postponed["exclusion_list_stale"] == 2
    assert world.dispatcher().tick().stopped == "exclusion_list_stale"
    assert len(world.fake.calls) == 1


def test_a_target_paid_mid_tick_is_not_called(world: World) -> None:
    world.campaign([fixed_line_target() for _ in range(2)])

    def second_target_pays() -> None:
        with world.database.unit_of_work() as session:
            person = session.scalars(select(Person).order_by(Person.id.desc())).first()
            assert person is not None
            person.status = TargetStatus.PAID

    report = with_checkpoint(world, "claimed", 2, second_target_pays).tick()

    assert report.placed == 1 and report.refused["paid"] == 1
    assert len(world.fake.calls) == 1


# ---------------------------------------------------------------------------- the clock


def test_clock_jumping_forward_out_of_the_window_postpones(world: World) -> None:
    world.campaign([fixed_line_target()])
    world.clock.advance(timedelta(hours=12))  # Monday 22:00
    report = world.dispatcher().tick()
    assert report.postponed["outside_window"] == 1 and world.fake.calls == []


def test_clock_jumping_back_neither_redials_nor_lifts_the_caps(world: World) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    dispatcher = world.dispatcher()
    dispatcher.tick()
    finish_call(world, attempts(world)[0].id, result="no-answer")
    dispatcher.tick()  # plans the retry >= 4 h later
    retry_at = attempts(world)[1].scheduled_at

    world.clock.advance(timedelta(hours=-2))  # back to 08:00 (NTP step, VM restore ...)
    assert dispatcher.tick().claimed == 0
    world.clock.set(retry_at)
    assert dispatcher.tick().placed == 1
    finish_call(world, attempts(world)[1].id, result="no-answer")
    dispatcher.tick()
    world.clock.set(retry_at - timedelta(hours=3))  # jump back again
    with world.database.unit_of_work() as session:  # force the third attempt due "now"
        third = session.scalars(select(Attempt).order_by(Attempt.id.desc())).first()
        assert third is not None
        third.scheduled_at = world.clock.now()
    report = dispatcher.tick()
    assert report.postponed["cap_reached"] == 1  # two calls this day already, clock or not
    assert world.fake.calls_per_number()[number] == 2


# ---------------------------------------------------------------------------- concurrency


def test_concurrent_ticks_never_claim_the_same_attempt(world: World) -> None:
    targets = [fixed_line_target() for _ in range(40)]
    world.campaign(targets)
    dispatchers = [
        world.dispatcher(f"w{i}", pacer=world.pacer(max_concurrent_calls=100), claim_batch=7)
        for i in range(2)
    ]
    reports: list[TickReport] = []
    barrier = threading.Barrier(2)

    def run(dispatcher: Dispatcher) -> None:
        barrier.wait()
        for _ in range(6):
            reports.append(dispatcher.tick())

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.placed for r in reports) == 40
    assert set(world.fake.calls_per_number().values()) == {1}
    assert len(world.fake.calls) == 40
    by_worker = {a.claimed_by for a in attempts(world)}
    assert by_worker <= {"w0", "w1"}


def test_postgresql_claims_skip_rows_another_worker_holds(world: World) -> None:
    if world.database.engine.dialect.name != "postgresql":
        pytest.skip("SELECT ... FOR UPDATE SKIP LOCKED is the PostgreSQL claim path")
    world.campaign([fixed_line_target() for _ in range(4)])
    with world.database.unit_of_work() as session:  # worker A, mid-claim, holds two rows
        held = session.scalars(
            select(Attempt.id).order_by(Attempt.id).limit(2).with_for_update()
        ).all()
        claimed = world.dispatcher("w-b")._claim((Channel.IVR,))  # worker B, other connection
    assert len(claimed) == 2 and set(claimed).isdisjoint(held)
