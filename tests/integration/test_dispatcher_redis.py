"""Pacing shared through Redis: two dialer processes (two dispatchers, two Redis clients)
share the call slots and the per-number locks; an unreachable Redis stops dialing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kernel.db import Database
from kernel.models import PhoneKind
from kernel.redis_coordination import RedisCoordination
from tests.fakes.dialer_world import Target, World, new_number

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace() -> str:
    return f"test-dialer-{uuid.uuid4().hex}"


@pytest.fixture
def stores(redis_url: str, namespace: str) -> Iterator[tuple[RedisCoordination, RedisCoordination]]:
    one, two = RedisCoordination(redis_url, namespace), RedisCoordination(redis_url, namespace)
    yield one, two
    one.delete_state_prefix("")
    one.close()
    two.close()


def test_two_processes_share_slots_and_number_locks_through_redis(
    database: Database, stores: tuple[RedisCoordination, RedisCoordination]
) -> None:
    one, two = stores
    world = World(database, coordination=one)
    world.exclusion_list()
    household = new_number(PhoneKind.FIXED_LINE)
    world.campaign(
        [Target(numbers=[(household, PhoneKind.FIXED_LINE)]) for _ in range(2)]
        + [Target() for _ in range(4)]
    )
    first = world.dispatcher("node-a", pacer=world.pacer(max_concurrent_calls=3), claim_batch=1)
    world.coordination = two
    second = world.dispatcher("node-b", pacer=world.pacer(max_concurrent_calls=3))

    first.tick()  # node a: the first household member
    report = second.tick()  # node b: the housemate must wait; two others fill the slots
    assert report.postponed["number_busy"] == 1 and report.placed == 2
    assert world.fake.calls_per_number()[household] == 1

    report = first.tick()  # node a again: the 3 slots are all held (by both nodes)
    assert report.placed == 0 and report.postponed["no_capacity"] == 1
    assert len(world.fake.calls) == 3


def test_an_unreachable_redis_stops_dialing(database: Database) -> None:
    unreachable = RedisCoordination("redis://127.0.0.1:1/0", "nowhere", timeout=0.2)
    world = World(database, coordination=unreachable)
    world.exclusion_list()
    world.campaign([Target() for _ in range(3)])

    report = world.dispatcher().tick()

    assert report.stopped == "CoordinationUnavailable"
    assert world.fake.calls == [] and report.handed_back == 3
