"""Exactly once: a dialer killed between claim and call, or between call and recording, never
leads to a second call to that number within its retry interval; start-up reconciliation
keeps calls the carrier still has and marks the others lost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dialer.reconcile import reconcile
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Channel, PhoneKind
from tests.fakes.dialer_world import Target, World, finish_call, new_number

RETRY = timedelta(hours=4)
STALE = timedelta(minutes=5)


class Killed(BaseException):
    """The process died here (BaseException: nothing in the tick may swallow it)."""


@pytest.fixture
def world(database: Database) -> World:
    built = World(database)
    built.exclusion_list()
    return built


def attempts(world: World) -> list[Attempt]:
    with world.database.read_only() as session:
        return list(session.scalars(select(Attempt).order_by(Attempt.id)))


def kill_at(point: str):  # type: ignore[no-untyped-def]
    def checkpoint(reached: str, _attempt_id: int) -> None:
        if reached == point:
            raise Killed(point)

    return checkpoint


def run_reconcile(world: World) -> tuple[int, int, int]:
    report = reconcile(
        world.database,
        world.fake,
        world.clock,
        world.window,
        world.dispatcher().config.policy,
        stale_after=STALE,
        coordination=world.coordination,
    )
    return report.examined, report.still_active, report.lost


def run_days(world: World, days: int) -> None:
    """A new dialer process works on for ``days``: every call rings out unanswered."""
    dispatcher = world.dispatcher("w-restarted")
    end = world.clock.now() + timedelta(days=days)
    while world.clock.now() < end:
        dispatcher.tick()
        for attempt in attempts(world):
            if attempt.status is AttemptStatus.IN_PROGRESS:
                finish_call(world, attempt.id, result="no-answer")
        world.clock.advance(timedelta(minutes=20))


@pytest.mark.parametrize("point", ["claimed", "placed"])
def test_a_killed_dispatcher_never_causes_a_second_call_within_the_retry_interval(
    world: World, point: str
) -> None:
    number = new_number(PhoneKind.FIXED_LINE)
    world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    dispatcher = world.dispatcher("w-dies")
    dispatcher._checkpoint = kill_at(point)

    with pytest.raises(Killed):
        dispatcher.tick()
    (attempt,) = attempts(world)
    assert attempt.status is AttemptStatus.CLAIMED  # nothing recorded after the claim
    calls_before = len(world.fake.calls)
    assert calls_before == (1 if point == "placed" else 0)
    killed_at = world.clock.now()

    assert run_reconcile(world) == (0, 0, 0)  # too fresh: maybe a live worker's claim
    world.clock.advance(STALE + timedelta(seconds=1))
    world.fake.finish_all()  # the orphaned call (if any) ended meanwhile
    assert run_reconcile(world) == (1, 0, 1)

    lost, retry = attempts(world)
    assert lost.status is AttemptStatus.COMPLETED and lost.carrier_result == "lost"
    assert retry.channel is Channel.IVR and retry.scheduled_at >= world.clock.now() + RETRY

    run_days(world, 3)
    later = [call.at for call in world.fake.calls[calls_before:]]
    assert later, "the target is retried after the interval"
    assert min(later) >= killed_at + RETRY
    gap = world.fake.closest_repeat()
    assert gap is None or gap >= RETRY


def test_reconcile_keeps_calls_the_carrier_still_has(world: World) -> None:
    world.campaign([Target(), Target()])
    world.dispatcher().tick()
    first, second = attempts(world)
    assert second.carrier_ref is not None
    world.fake.finish(second.carrier_ref)  # the carrier lost track of the second call's end
    world.clock.advance(STALE + timedelta(seconds=1))

    assert run_reconcile(world) == (2, 1, 1)

    first, second, *follow_ups = attempts(world)
    assert first.status is AttemptStatus.IN_PROGRESS
    assert second.status is AttemptStatus.COMPLETED and second.carrier_result == "lost"
    assert [f.channel for f in follow_ups] == [Channel.IVR]  # no SMS right after a lost call
    assert follow_ups[0].scheduled_at >= world.clock.now() + RETRY


def test_reconcile_releases_the_number_lock_of_a_lost_call(world: World) -> None:
    number = new_number()
    world.campaign([Target(numbers=[(number, PhoneKind.MOBILE)])])
    dispatcher = world.dispatcher("w-dies")
    dispatcher._checkpoint = kill_at("placed")
    with pytest.raises(Killed):
        dispatcher.tick()
    digest = world.keyring.digest("phone", number)
    assert world.coordination.lock_owner(f"number:{digest}") is not None
    world.clock.advance(STALE + timedelta(seconds=1))
    world.fake.finish_all()
    run_reconcile(world)
    assert world.coordination.lock_owner(f"number:{digest}") is None
