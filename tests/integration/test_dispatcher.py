"""The dispatcher tick on SQLite and PostgreSQL with the scripted fake carrier."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dialer.dispatcher import Dispatcher
from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    Channel,
    DailyAggregate,
    DoNotCall,
    Person,
    PhoneKind,
    TargetStatus,
)
from tests.fakes.dialer_world import Target, World, finish_call, new_number


@pytest.fixture
def world(database: Database) -> World:
    built = World(database)
    built.exclusion_list()
    return built


def attempts(world: World) -> list[Attempt]:
    with world.database.read_only() as session:
        return list(session.scalars(select(Attempt).order_by(Attempt.id)))


def tick(dispatcher: Dispatcher) -> None:
    dispatcher.tick()


def test_a_tick_places_one_call_per_due_attempt_and_records_it(world: World) -> None:
    targets = [Target() for _ in range(3)]
    world.campaign(targets)

    report = world.dispatcher().tick()

    assert (report.claimed, report.placed, report.stopped) == (3, 3, None)
    placed = {call.request.to_e164 for call in world.fake.calls}
    assert placed == {t.numbers[0][0] for t in targets}
    for attempt in attempts(world):
        assert attempt.status is AttemptStatus.IN_PROGRESS
        assert attempt.carrier == "fake" and attempt.carrier_ref is not None
        assert attempt.started_at == world.clock.now()
        assert attempt.claimed_by == "w1"
    keys = {call.request.idempotency_key for call in world.fake.calls}
    assert keys == {attempt.idempotency_key for attempt in attempts(world)}


def test_a_second_tick_does_not_call_again(world: World) -> None:
    world.campaign([Target()])
    dispatcher = world.dispatcher()
    dispatcher.tick()
    world.clock.advance(timedelta(minutes=1))
    report = dispatcher.tick()
    assert report.claimed == 0
    assert len(world.fake.calls) == 1


def test_outside_the_window_attempts_move_to_the_next_opening(world: World) -> None:
    world.campaign([Target()])
    world.clock.set(world.clock.now().replace(hour=21, minute=30))  # Monday 21:30 Tokyo

    report = world.dispatcher().tick()

    assert report.postponed["outside_window"] == 1 and report.placed == 0
    (attempt,) = attempts(world)
    assert attempt.status is AttemptStatus.SCHEDULED
    assert attempt.refusal_reason is None
    assert attempt.scheduled_at.astimezone(TOKYO).isoformat() == "2026-12-08T09:00:00+09:00"
    assert world.fake.calls == []


def test_no_exclusion_list_means_nothing_is_claimed(database: Database) -> None:
    world = World(database)
    world.campaign([Target()])
    report = world.dispatcher().tick()
    assert report.stopped == "exclusion_list_missing"
    assert report.claimed == 0 and world.fake.calls == []


def test_a_stale_exclusion_list_stops_dialing_until_a_fresh_one_arrives(world: World) -> None:
    world.campaign([Target(), Target()])
    world.clock.advance(timedelta(hours=24))  # list was 1 h old: now 25 h

    stopped = world.dispatcher().tick()
    assert stopped.stopped == "exclusion_list_stale" and world.fake.calls == []

    world.exclusion_list()
    resumed = world.dispatcher().tick()
    assert resumed.placed == 2


def test_a_target_on_the_exclusion_list_is_refused_and_never_called(world: World) -> None:
    world.campaign([Target(), Target()])
    with world.database.read_only() as session:
        first_ref = session.scalars(select(Person.ref_digest).order_by(Person.id)).first()
    assert first_ref is not None
    world.exclusion_list(refs=(first_ref,))

    report = world.dispatcher().tick()

    assert report.refused["exclusion_list"] == 1 and report.placed == 1
    refused = [a for a in attempts(world) if a.status is AttemptStatus.REFUSED]
    assert [a.refusal_reason for a in refused] == ["exclusion_list"]
    assert all(a.follow_up_planned for a in refused)
    assert len(attempts(world)) == 2  # no follow-up for an excluded person


def test_a_target_paid_mid_campaign_is_not_contacted(world: World) -> None:
    world.campaign([Target()])
    with world.database.unit_of_work() as session:
        person = session.scalars(select(Person)).one()
        person.status = TargetStatus.PAID

    report = world.dispatcher().tick()

    assert report.refused["paid"] == 1 and world.fake.calls == []
    (attempt,) = attempts(world)
    assert attempt.status is AttemptStatus.REFUSED and attempt.refusal_reason == "paid"


def test_a_number_on_do_not_call_is_refused_and_the_target_gets_a_letter(world: World) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    with world.database.unit_of_work() as session:
        digest = world.keyring.digest("phone", number)
        session.add(DoNotCall(number_digest=digest, reason="opt_out", source="sms"))

    report = world.dispatcher().tick()

    assert report.refused["do_not_call"] == 1 and world.fake.calls == []
    first, follow_up = attempts(world)
    assert first.refusal_reason == "do_not_call"
    assert follow_up.channel is Channel.LETTER and follow_up.sequence_no == 2


def test_refusals_are_counted_in_the_daily_aggregates(world: World) -> None:
    world.campaign([Target()])
    with world.database.unit_of_work() as session:
        session.scalars(select(Person)).one().status = TargetStatus.PAID
    world.dispatcher().tick()
    with world.database.read_only() as session:
        metrics = {row.metric: row.value for row in session.scalars(select(DailyAggregate))}
    assert metrics["refused.paid"] == 1


def test_a_shared_household_number_is_never_called_twice_at_once(world: World) -> None:
    number = new_number()
    world.campaign([Target(numbers=[(number, PhoneKind.MOBILE)]) for _ in range(2)])

    dispatcher = world.dispatcher()
    report = dispatcher.tick()

    assert report.placed == 1 and report.postponed["number_busy"] == 1
    assert world.fake.calls_per_number()[number] == 1
    waiting = [a for a in attempts(world) if a.status is AttemptStatus.SCHEDULED]
    assert waiting[0].scheduled_at == world.clock.now() + timedelta(minutes=10)

    finish_call(world, world_attempt_in_progress(world), outcome="rpc_confirmed")
    world.clock.advance(timedelta(minutes=10))
    assert dispatcher.tick().placed == 1
    assert world.fake.calls_per_number()[number] == 2


def world_attempt_in_progress(world: World) -> int:
    return next(a.id for a in attempts(world) if a.status is AttemptStatus.IN_PROGRESS)


def test_concurrent_calls_are_capped_and_the_rest_handed_back(world: World) -> None:
    world.campaign([Target() for _ in range(5)])
    dispatcher = world.dispatcher(pacer=world.pacer(max_concurrent_calls=2))

    report = dispatcher.tick()
    assert report.claimed == 2 and report.placed == 2  # claims no more than it may dial

    other = world.dispatcher("w2", pacer=world.pacer(max_concurrent_calls=2))
    report = other.tick()  # another process sharing the limits: no slot left
    assert report.placed == 0 and report.postponed["no_capacity"] == 1
    assert report.handed_back == 2
    statuses = sorted(a.status.value for a in attempts(world))
    assert statuses.count("in_progress") == 2 and statuses.count("scheduled") == 3

    for attempt in attempts(world):
        if attempt.status is AttemptStatus.IN_PROGRESS:
            finish_call(world, attempt.id, outcome="rpc_confirmed")
    assert dispatcher.tick().placed == 2  # finished calls gave their slots back


def test_calls_per_second_are_limited(world: World) -> None:
    world.campaign([Target() for _ in range(4)])
    dispatcher = world.dispatcher(pacer=world.pacer(calls_per_second=3))
    report = dispatcher.tick()
    assert report.placed == 3 and report.postponed["rate_limited"] == 1


def test_a_no_answer_is_retried_hours_later_on_another_band(world: World) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    dispatcher = world.dispatcher()
    dispatcher.tick()
    (first,) = attempts(world)
    finish_call(world, first.id, result="no-answer")

    dispatcher.tick()

    first, retry = attempts(world)
    assert first.follow_up_planned
    assert retry.channel is Channel.IVR and retry.status is AttemptStatus.SCHEDULED
    assert retry.scheduled_at >= world.clock.now() + timedelta(hours=4)
    assert world.window.is_open(retry.scheduled_at)


def test_a_mobile_not_reached_gets_one_sms_with_the_approved_template(world: World) -> None:
    world.campaign([Target()])
    dispatcher = world.dispatcher()
    dispatcher.tick()
    (first,) = attempts(world)
    finish_call(world, first.id, result="no-answer")

    report = dispatcher.tick()  # plans the SMS (due now) and sends it

    assert report.follow_ups == 1 and report.sms_sent == 1
    (sms,) = world.fake.sms
    assert "行き違い" in sms.request.body and "03-1234-5678" in sms.request.body
    assert "円" not in sms.request.body
    sent = [a for a in attempts(world) if a.channel is Channel.SMS]
    assert sent[0].status is AttemptStatus.COMPLETED and sent[0].outcome_code == "sms_sent"
    retry = attempts(world)[-1]
    assert retry.channel is Channel.IVR and retry.status is AttemptStatus.SCHEDULED


def test_sms_goes_only_to_mobile_numbers(world: World) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    with world.database.unit_of_work() as session:
        attempt = session.scalars(select(Attempt)).one()
        attempt.channel = Channel.SMS
    report = world.dispatcher().tick()
    assert report.refused["not_mobile"] == 1 and world.fake.sms == []


def test_daily_cap_per_number_postpones_to_the_next_day(world: World) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)]) for _ in range(3)])
    dispatcher = world.dispatcher()
    for _ in range(3):
        dispatcher.tick()
        for attempt in attempts(world):
            if attempt.status is AttemptStatus.IN_PROGRESS:
                finish_call(world, attempt.id, outcome="rpc_confirmed")
        world.clock.advance(timedelta(minutes=11))
    assert world.fake.calls_per_number()[number] == 2
    waiting = [a for a in attempts(world) if a.status is AttemptStatus.SCHEDULED]
    assert len(waiting) == 1
    assert waiting[0].scheduled_at.astimezone(TOKYO).isoformat() == "2026-12-08T09:00:00+09:00"
