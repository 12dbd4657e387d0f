"""The coordination port: the same tests run against LocalCoordination and a real Redis.

Time: the local implementation runs on a fake clock (``elapse`` advances it instantly); the
Redis one on the Redis server's clock (``elapse`` sleeps), so its TTLs here are short.
"Another process" is a second RedisCoordination, i.e. a second connection pool, on the same
namespace; in-process it is the same object.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
import redis

from dunning.wiring import connect_coordination
from kernel.coordination import (
    Coordination,
    CoordinationUnavailable,
    JSONValue,
    LocalCoordination,
)
from kernel.errors import DunningError
from kernel.redis_coordination import RedisCoordination

T = TypeVar("T")
Elapse = Callable[[float], None]

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
QUIET = 0.2  # how long a subscriber waits to conclude that nothing is coming


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _purge_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def coordination(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Coordination]:
    """Both implementations; Redis gets a fresh random namespace, purged afterwards."""
    if request.param == "local":
        local = LocalCoordination(clock)
        yield local
        local.close()
        return
    url: str = request.getfixturevalue("redis_url")
    namespace = f"test-coordination-{uuid.uuid4().hex}"
    store = RedisCoordination(url, namespace)
    try:
        yield store
    finally:
        store.close()
        _purge_namespace(url, namespace)


@pytest.fixture
def peer(coordination: Coordination, request: pytest.FixtureRequest) -> Iterator[Coordination]:
    """Another process's view of the same coordination store."""
    if not isinstance(coordination, RedisCoordination):
        yield coordination
        return
    other = RedisCoordination(request.getfixturevalue("redis_url"), coordination.namespace)
    yield other
    other.close()


@pytest.fixture
def elapse(coordination: Coordination, clock: FakeClock) -> Elapse:
    def advance(seconds: float) -> None:
        if isinstance(coordination, LocalCoordination):
            clock.advance(seconds)
        else:
            time.sleep(seconds)

    return advance


def _run_together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..count-1)`` on ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def start(index: int) -> T:
        barrier.wait(timeout=10)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


# --------------------------------------------------------------------------- events


def test_published_json_arrives_intact_in_another_process(
    coordination: Coordination, peer: Coordination
) -> None:
    message: dict[str, JSONValue] = {
        "campaign": 7,
        "rate": 0.25,
        "paused": False,
        "operator": None,
        "note": "督促 ｶﾅ ✓",
        "calls": [{"id": 1, "outcome": "promise"}, {"id": 2, "outcome": "no_answer"}],
    }
    subscription = coordination.subscribe("campaign:7")
    peer.publish("campaign:7", message)
    assert subscription.get(timeout=2) == message
    subscription.close()


def test_messages_arrive_in_order_to_every_subscriber(
    coordination: Coordination, peer: Coordination
) -> None:
    first, second = coordination.subscribe("board"), peer.subscribe("board")
    for n in range(5):
        coordination.publish("board", {"n": n})
    for subscription in (first, second):
        assert [subscription.get(timeout=2) for _ in range(5)] == [{"n": n} for n in range(5)]
        assert subscription.get(timeout=QUIET) is None
        subscription.close()


def test_no_message_leaks_to_another_channel(coordination: Coordination) -> None:
    one, other = coordination.subscribe("campaign:1"), coordination.subscribe("campaign:10")
    coordination.publish("campaign:1", {"calls": 3})
    assert one.get(timeout=2) == {"calls": 3}
    assert other.get(timeout=QUIET) is None
    one.close()
    other.close()


def test_subscriber_sees_only_messages_published_after_subscribing(
    coordination: Coordination, peer: Coordination
) -> None:
    peer.publish("late", {"n": 1})
    subscription = coordination.subscribe("late")
    peer.publish("late", {"n": 2})  # at once, from another connection
    assert subscription.get(timeout=2) == {"n": 2}
    assert subscription.get(timeout=QUIET) is None
    subscription.close()


def test_closed_subscription_receives_nothing(coordination: Coordination) -> None:
    subscription = coordination.subscribe("closing")
    subscription.close()
    coordination.publish("closing", {"n": 1})
    assert subscription.get(timeout=QUIET) is None
    subscription.close()  # closing twice is harmless


def test_get_times_out_with_none(coordination: Coordination) -> None:
    subscription = coordination.subscribe("silent")
    started = time.monotonic()
    assert subscription.get(timeout=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2
    subscription.close()


def test_publishing_something_that_is_not_json_fails(coordination: Coordination) -> None:
    with pytest.raises(ValueError):
        coordination.publish("bad", {"rate": math.nan})
    with pytest.raises(TypeError):
        coordination.publish("bad", {"when": object()})  # type: ignore[dict-item]


# --------------------------------------------------------------------------- locks


def test_lock_is_exclusive_and_only_its_owner_releases_it(
    coordination: Coordination, peer: Coordination
) -> None:
    assert coordination.lock_owner("tel:0312345678") is None
    assert coordination.acquire_lock("tel:0312345678", "worker-1", 10)
    assert not peer.acquire_lock("tel:0312345678", "worker-2", 10)
    assert peer.lock_owner("tel:0312345678") == "worker-1"
    assert not peer.release_lock("tel:0312345678", "worker-2")
    assert peer.lock_owner("tel:0312345678") == "worker-1"
    assert coordination.release_lock("tel:0312345678", "worker-1")
    assert not coordination.release_lock("tel:0312345678", "worker-1")  # already released
    assert peer.acquire_lock("tel:0312345678", "worker-2", 10)
    assert peer.lock_owner("tel:0312345678") == "worker-2"


def test_locks_on_different_keys_are_independent(coordination: Coordination) -> None:
    assert coordination.acquire_lock("tel:1", "worker-1", 10)
    assert coordination.acquire_lock("tel:2", "worker-2", 10)
    assert coordination.lock_owner("tel:1") == "worker-1"
    assert coordination.lock_owner("tel:2") == "worker-2"


def test_lock_expires_after_its_ttl(coordination: Coordination, elapse: Elapse) -> None:
    assert coordination.acquire_lock("tel:1", "crashed-worker", 0.2)
    elapse(0.3)
    assert coordination.lock_owner("tel:1") is None
    assert coordination.acquire_lock("tel:1", "worker-2", 10)
    assert not coordination.release_lock("tel:1", "crashed-worker")  # cannot free its successor
    assert coordination.lock_owner("tel:1") == "worker-2"


def test_reacquiring_by_the_same_owner_refreshes_the_ttl(
    coordination: Coordination, elapse: Elapse
) -> None:
    assert coordination.acquire_lock("tel:1", "worker-1", 0.5)
    elapse(0.3)
    assert coordination.acquire_lock("tel:1", "worker-1", 0.5)  # now held until 0.8
    elapse(0.3)
    assert coordination.lock_owner("tel:1") == "worker-1"  # past the first TTL, still held
    elapse(0.3)
    assert coordination.lock_owner("tel:1") is None


def test_exactly_one_of_many_racing_threads_gets_the_lock(
    coordination: Coordination, peer: Coordination
) -> None:
    stores = (coordination, peer)

    def race(index: int) -> bool:
        return stores[index % 2].acquire_lock("tel:race", f"worker-{index}", 10)

    won = _run_together(16, race)
    assert won.count(True) == 1
    assert coordination.lock_owner("tel:race") == f"worker-{won.index(True)}"


# --------------------------------------------------------------------------- rate limiter


def test_rate_limiter_grants_exactly_the_limit_then_recovers(
    coordination: Coordination, elapse: Elapse
) -> None:
    grants = [coordination.try_acquire_rate("carrier:a", 3, 0.3) for _ in range(5)]
    assert grants == [True, True, True, False, False]
    assert coordination.try_acquire_rate("carrier:b", 3, 0.3)  # other keys are independent
    elapse(0.35)
    assert [coordination.try_acquire_rate("carrier:a", 3, 0.3) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_rate_limiter_window_slides(coordination: Coordination, elapse: Elapse) -> None:
    assert coordination.try_acquire_rate("carrier", 3, 0.6)
    assert coordination.try_acquire_rate("carrier", 3, 0.6)
    elapse(0.3)
    assert coordination.try_acquire_rate("carrier", 3, 0.6)
    assert not coordination.try_acquire_rate("carrier", 3, 0.6)
    elapse(0.35)  # the first two permits left the window, the third has not
    assert coordination.try_acquire_rate("carrier", 3, 0.6)
    assert coordination.try_acquire_rate("carrier", 3, 0.6)
    assert not coordination.try_acquire_rate("carrier", 3, 0.6)


def test_rate_limit_holds_across_threads_and_processes(
    coordination: Coordination, peer: Coordination
) -> None:
    stores = (coordination, peer)

    def hammer(index: int) -> int:
        store = stores[index % 2]
        return sum(store.try_acquire_rate("carrier:shared", 20, 30.0) for _ in range(25))

    granted = _run_together(8, hammer)
    assert sum(granted) == 20  # 200 attempts inside one window: never more than the limit


# --------------------------------------------------------------------------- state


def test_state_round_trip_overwrite_and_delete(coordination: Coordination) -> None:
    assert coordination.get_state("ivr:7:call-1") is None
    coordination.put_state("ivr:7:call-1", '{"step": "本人確認"}', 30)
    assert coordination.get_state("ivr:7:call-1") == '{"step": "本人確認"}'
    coordination.put_state("ivr:7:call-1", "", 30)
    assert coordination.get_state("ivr:7:call-1") == ""
    coordination.delete_state("ivr:7:call-1")
    assert coordination.get_state("ivr:7:call-1") is None
    coordination.delete_state("ivr:7:call-1")  # deleting a missing key is harmless


def test_state_expires_after_its_ttl(coordination: Coordination, elapse: Elapse) -> None:
    coordination.put_state("ivr:7:call-1", "short", 0.2)
    coordination.put_state("ivr:7:call-2", "long", 30)
    elapse(0.3)
    assert coordination.get_state("ivr:7:call-1") is None
    assert coordination.get_state("ivr:7:call-2") == "long"


def test_delete_state_prefix_deletes_only_that_prefix(coordination: Coordination) -> None:
    for key in ("ivr:7:call-1", "ivr:7:call-2", "ivr:7:", "ivr:70:call-1", "other:ivr:7:x"):
        coordination.put_state(key, "x", 30)
    coordination.acquire_lock("ivr:7:call-1", "worker-1", 30)
    assert coordination.delete_state_prefix("ivr:7:") == 3
    assert coordination.get_state("ivr:7:call-1") is None
    assert coordination.get_state("ivr:7:") is None
    assert coordination.get_state("ivr:70:call-1") == "x"
    assert coordination.get_state("other:ivr:7:x") == "x"
    assert coordination.lock_owner("ivr:7:call-1") == "worker-1"  # only state is erased
    assert coordination.delete_state_prefix("ivr:7:") == 0


def test_delete_state_prefix_counts_many_keys_and_skips_expired(
    coordination: Coordination, elapse: Elapse
) -> None:
    for index in range(1_200):  # more than one SCAN/DEL batch
        coordination.put_state(f"ivr:9:{index}", "x", 30)
    coordination.put_state("ivr:9:expired", "x", 0.2)
    elapse(0.3)
    assert coordination.delete_state_prefix("ivr:9:") == 1_200


@pytest.mark.parametrize("prefix", ["a*b", "a?b", "a[X]b", "a\\b", "a^-b"])
def test_delete_state_prefix_treats_glob_characters_literally(
    coordination: Coordination, prefix: str
) -> None:
    coordination.put_state(f"{prefix}:1", "doomed", 30)
    coordination.put_state("aXb:1", "kept", 30)
    coordination.put_state("ab:1", "kept", 30)
    assert coordination.delete_state_prefix(prefix) == 1
    assert coordination.get_state("aXb:1") == "kept"
    assert coordination.get_state("ab:1") == "kept"


# --------------------------------------------------------------------------- misc


def test_ping(coordination: Coordination) -> None:
    assert coordination.ping() is True


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.acquire_lock("k", "a", 0),
        lambda c: c.acquire_lock("k", "a", -1),
        lambda c: c.put_state("k", "v", 0),
        lambda c: c.try_acquire_rate("k", 0, 1),
        lambda c: c.try_acquire_rate("k", 1, 0),
    ],
    ids=["lock-ttl-0", "lock-ttl-negative", "state-ttl-0", "rate-limit-0", "rate-period-0"],
)
def test_nonsense_arguments_are_refused(
    coordination: Coordination, call: Callable[[Coordination], object]
) -> None:
    with pytest.raises(ValueError):
        call(coordination)


@pytest.mark.redis
def test_redis_namespaces_are_isolated(redis_url: str) -> None:
    names = [f"test-coordination-{uuid.uuid4().hex}" for _ in range(2)]
    first, second = (RedisCoordination(redis_url, name) for name in names)
    try:
        subscription = second.subscribe("events")
        first.publish("events", {"n": 1})
        first.put_state("k", "v", 30)
        assert first.acquire_lock("k", "a", 30)
        assert first.try_acquire_rate("k", 1, 30)
        assert subscription.get(timeout=QUIET) is None
        assert second.get_state("k") is None
        assert second.lock_owner("k") is None
        assert second.try_acquire_rate("k", 1, 30)
        assert second.delete_state_prefix("") == 0
        assert first.get_state("k") == "v"
        raw = redis.Redis.from_url(redis_url, decode_responses=True)
        keys = set(raw.scan_iter(match=f"{names[0]}:*"))
        raw.close()
        assert keys == {f"{names[0]}:state:k", f"{names[0]}:lock:k", f"{names[0]}:rate:k"}
    finally:
        for name, store in zip(names, (first, second), strict=True):
            store.close()
            _purge_namespace(redis_url, name)


def test_unreachable_redis_raises_coordination_unavailable_quickly() -> None:
    store = RedisCoordination(UNREACHABLE_REDIS, timeout=0.5)
    calls: list[Callable[[], object]] = [
        lambda: store.publish("c", {"n": 1}),
        lambda: store.subscribe("c"),
        lambda: store.acquire_lock("k", "a", 1),
        lambda: store.release_lock("k", "a"),
        lambda: store.lock_owner("k"),
        lambda: store.try_acquire_rate("k", 1, 1),
        lambda: store.put_state("k", "v", 1),
        lambda: store.get_state("k"),
        lambda: store.delete_state("k"),
        lambda: store.delete_state_prefix("k"),
    ]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(CoordinationUnavailable) as raised:
            call()
        assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
    assert store.ping() is False
    store.close()
    assert time.monotonic() - started < 3
    assert issubclass(CoordinationUnavailable, DunningError)


def test_connect_chooses_the_implementation() -> None:
    assert isinstance(connect_coordination(None), LocalCoordination)
    assert isinstance(connect_coordination(""), LocalCoordination)
    remote = connect_coordination(UNREACHABLE_REDIS)  # connects lazily, on first use
    assert isinstance(remote, RedisCoordination)
    assert remote.namespace == "dunning"
    remote.close()
