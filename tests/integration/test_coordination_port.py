"""Both implementations of the coordination port pass the same tests (Redis for real)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from dunning.wiring import connect_coordination
from kernel.coordination import (
    Coordination,
    CoordinationUnavailable,
    LocalCoordination,
)
from kernel.redis_coordination import RedisCoordination


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def coordination(kind: str, request: pytest.FixtureRequest) -> Iterator[Coordination]:
    if kind == "local":
        yield LocalCoordination()
        return
    url = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex}"
    store = RedisCoordination(url, namespace)
    yield store
    store.delete_state_prefix("")
    store.close()


def _second_process(coordination: Coordination, request: pytest.FixtureRequest) -> Coordination:
    """Another process's view: a second connection for Redis, the same object in-process."""
    if isinstance(coordination, RedisCoordination):
        other = RedisCoordination(request.getfixturevalue("redis_url"), coordination.namespace)
        request.addfinalizer(other.close)
        return other
    return coordination


def wait_expiry(kind: str) -> float:
    return 0.25 if kind == "redis" else 0.05


def test_publish_reaches_subscribers_of_that_channel_only(coordination: Coordination) -> None:
    progress = coordination.subscribe("campaign:1")
    other = coordination.subscribe("campaign:2")
    coordination.publish("campaign:1", {"calls": 3, "rate": 0.5, "ok": True, "tags": ["a"]})
    assert progress.get(timeout=2) == {"calls": 3, "rate": 0.5, "ok": True, "tags": ["a"]}
    assert other.get(timeout=0.2) is None
    progress.close()
    other.close()


def test_subscriber_sees_only_messages_after_subscribing(coordination: Coordination) -> None:
    coordination.publish("late", {"n": 1})
    subscription = coordination.subscribe("late")
    coordination.publish("late", {"n": 2})
    assert subscription.get(timeout=2) == {"n": 2}
    assert subscription.get(timeout=0.2) is None
    subscription.close()


def test_lock_is_exclusive_and_only_the_owner_releases(
    coordination: Coordination, request: pytest.FixtureRequest
) -> None:
    other = _second_process(coordination, request)
    assert coordination.acquire_lock("number:abc", "worker-1", 10)
    assert not other.acquire_lock("number:abc", "worker-2", 10)
    assert coordination.acquire_lock("number:abc", "worker-1", 10)  # re-entry refreshes
    assert other.lock_owner("number:abc") == "worker-1"
    assert not other.release_lock("number:abc", "worker-2")
    assert coordination.release_lock("number:abc", "worker-1")
    assert other.acquire_lock("number:abc", "worker-2", 10)


def test_lock_expires_after_its_ttl(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "local":
        clock = FakeClock()
        store: Coordination = LocalCoordination(clock)
        assert store.acquire_lock("k", "a", 5)
        clock.now += 5.01
    else:
        store = RedisCoordination(request.getfixturevalue("redis_url"), f"t-{uuid.uuid4().hex}")
        assert store.acquire_lock("k", "a", 0.2)
        time.sleep(0.3)
    assert store.lock_owner("k") is None
    assert store.acquire_lock("k", "b", 5)


def test_exactly_one_of_many_racing_threads_gets_the_lock(
    coordination: Coordination, request: pytest.FixtureRequest
) -> None:
    stores = [coordination, _second_process(coordination, request)]
    winners: list[str] = []
    barrier = threading.Barrier(16)

    def race(index: int) -> None:
        barrier.wait()
        if stores[index % 2].acquire_lock("race", f"w{index}", 10):
            winners.append(f"w{index}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_rate_limiter_grants_exactly_the_limit_then_recovers(
    kind: str, request: pytest.FixtureRequest
) -> None:
    period = 1.0 if kind == "local" else 0.5
    clock = FakeClock()
    if kind == "local":
        store: Coordination = LocalCoordination(clock)
    else:
        store = RedisCoordination(request.getfixturevalue("redis_url"), f"t-{uuid.uuid4().hex}")
    grants = [store.try_acquire_rate("carrier", 5, period) for _ in range(8)]
    clock.now += period + 0.01
    if kind == "redis":
        time.sleep(period + 0.05)
    assert grants == [True] * 5 + [False] * 3
    assert store.try_acquire_rate("carrier", 5, period)


def test_rate_limit_holds_across_processes_under_contention(
    coordination: Coordination, request: pytest.FixtureRequest
) -> None:
    stores = [coordination, _second_process(coordination, request)]
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def hammer(index: int) -> None:
        barrier.wait()
        for _ in range(25):
            result = stores[index % 2].try_acquire_rate("shared", 20, 30.0)
            with lock:
                granted.append(result)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 20
    assert len(granted) == 200


def test_state_round_trip_expiry_and_prefix_delete(kind: str, coordination: Coordination) -> None:
    coordination.put_state("ivr:7:call-1", '{"step": "confirm"}', 30)
    coordination.put_state("ivr:7:call-2", "x", 30)
    coordination.put_state("ivr:70:call-1", "keep", 30)
    coordination.put_state("short", "gone soon", wait_expiry(kind) / 2)
    assert coordination.get_state("ivr:7:call-1") == '{"step": "confirm"}'
    assert coordination.delete_state_prefix("ivr:7:") == 2
    assert coordination.get_state("ivr:7:call-1") is None
    assert coordination.get_state("ivr:70:call-1") == "keep"
    time.sleep(wait_expiry(kind))
    assert coordination.get_state("short") is None
    coordination.delete_state("ivr:70:call-1")
    assert coordination.get_state("ivr:70:call-1") is None


def test_prefix_delete_treats_glob_characters_literally(coordination: Coordination) -> None:
    coordination.put_state("a*b:1", "x", 30)
    coordination.put_state("aXb:1", "y", 30)
    assert coordination.delete_state_prefix("a*b") == 1
    assert coordination.get_state("aXb:1") == "y"


def test_unreachable_redis_raises_coordination_unavailable() -> None:
    store = RedisCoordination("redis://127.0.0.1:1/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(CoordinationUnavailable):
        store.acquire_lock("k", "a", 1)
    with pytest.raises(CoordinationUnavailable):
        store.try_acquire_rate("k", 1, 1)
    with pytest.raises(CoordinationUnavailable):
        store.put_state("k", "v", 1)
    assert time.monotonic() - started < 5


def test_connect_chooses_the_implementation() -> None:
    assert isinstance(connect_coordination(None), LocalCoordination)
    assert isinstance(connect_coordination("redis://127.0.0.1:6379/15"), RedisCoordination)
