"""What several processes must agree on: live events, per-key locks, rate limits, short state.

One small port, :class:`Coordination`, with two implementations that pass the same tests:

* :class:`LocalCoordination` - the single-machine default without Redis: everything lives in
  this process, guarded by one mutex, timed by an injectable monotonic clock.
* :class:`RedisCoordination` - many web and dialer processes on several machines. Every key
  lives under ``<namespace>:``; locks are ``SET NX PX`` plus a Lua compare-and-delete; the rate
  limiter is a Lua sliding window timed by the Redis server's ``TIME`` so processes on machines
  with different clocks agree; events are Redis pub/sub with JSON payloads.

When Redis cannot be reached every call (except :meth:`Coordination.ping`, which answers
``False``) raises :class:`CoordinationUnavailable`, so callers stop dialing instead of guessing.
Nothing is retried silently: a retried rate-limit call or publish could count twice.

Live events are best effort, as with any pub/sub: a subscriber only sees messages published
after :meth:`Coordination.subscribe` returned, and nothing published while it was disconnected.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, cast

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from kernel.errors import DunningError

JSONValue: TypeAlias = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]
Message: TypeAlias = dict[str, JSONValue]

Clock: TypeAlias = Callable[[], float]

# Redis errors that mean "the shared store is not usable right now" rather than a bug of ours.
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes authentication and "loading dataset" errors
    redis.exceptions.TimeoutError,
    redis.exceptions.InvalidResponse,  # something that is not Redis answers on that port
    redis.exceptions.ReadOnlyError,  # a replica after a failover
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)

LOCAL_INBOX_LIMIT = 10_000  # per local subscriber; the oldest events are dropped beyond it


class CoordinationUnavailable(DunningError):
    """The shared store (Redis) cannot be reached; no decision may be taken on a guess."""

    http_status = 503
    exit_code = 69  # EX_UNAVAILABLE


class Subscription(Protocol):
    def get(self, timeout: float) -> Message | None:
        """The next message, or ``None`` when none arrived within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class Coordination(Protocol):
    def publish(self, channel: str, message: Mapping[str, JSONValue]) -> None: ...

    def subscribe(self, channel: str) -> Subscription: ...

    def acquire_lock(self, key: str, owner: str, ttl_seconds: float) -> bool:
        """Non-blocking; ``True`` if acquired or already held by ``owner`` (TTL refreshed)."""
        ...

    def release_lock(self, key: str, owner: str) -> bool:
        """Release if ``owner`` holds the lock; returns whether it was released."""
        ...

    def lock_owner(self, key: str) -> str | None: ...

    def try_acquire_rate(self, key: str, limit: int, period_seconds: float) -> bool:
        """At most ``limit`` permits in any window of ``period_seconds`` (sliding window)."""
        ...

    def put_state(self, key: str, value: str, ttl_seconds: float) -> None: ...

    def get_state(self, key: str) -> str | None: ...

    def delete_state(self, key: str) -> None: ...

    def delete_state_prefix(self, prefix: str) -> int:
        """Delete every live state key starting with ``prefix``; returns how many."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- shared helpers


def _encode(message: Mapping[str, JSONValue]) -> str:
    """Strict JSON (no NaN/Infinity: the browser console could not parse it)."""
    return json.dumps(dict(message), ensure_ascii=False, allow_nan=False)


def _decode(payload: str) -> Message | None:
    """The message, or ``None`` for a payload that is not a JSON object (not one of ours)."""
    try:
        loaded = json.loads(payload)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")


def _check_rate(limit: int, period_seconds: float) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit!r}")
    if not period_seconds > 0:
        raise ValueError(f"period_seconds must be positive, got {period_seconds!r}")


# --------------------------------------------------------------------------- in-process


class _LocalSubscription:
    """A bounded inbox; ``close`` detaches it from its publisher."""

    def __init__(self, channel: str, on_close: Callable[[_LocalSubscription], None]) -> None:
        self.channel = channel
        self._on_close = on_close
        self._inbox: deque[Message] = deque(maxlen=LOCAL_INBOX_LIMIT)
        self._ready = threading.Condition()
        self._closed = False

    def deliver(self, message: Message) -> None:
        with self._ready:
            if not self._closed:
                self._inbox.append(message)
                self._ready.notify()

    def get(self, timeout: float) -> Message | None:
        with self._ready:
            self._ready.wait_for(lambda: self._inbox or self._closed, max(0.0, timeout))
            return self._inbox.popleft() if self._inbox else None

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._inbox.clear()
            self._ready.notify_all()
        self._on_close(self)


@dataclass
class _Window:
    """Grant times of one rate-limit key (never more than ``limit`` of them)."""

    period: float
    grants: deque[float] = field(default_factory=deque)

    def evict(self, now: float) -> None:
        while self.grants and self.grants[0] <= now - self.period:
            self.grants.popleft()


class LocalCoordination:
    """In-process implementation: thread-safe, with an injectable monotonic clock."""

    SWEEP_INTERVAL = 60.0  # seconds between purges of expired locks, state and idle windows

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._subscribers: dict[str, list[_LocalSubscription]] = {}
        self._locks: dict[str, tuple[str, float]] = {}  # key -> (owner, expires at)
        self._state: dict[str, tuple[str, float]] = {}  # key -> (value, expires at)
        self._windows: dict[str, _Window] = {}
        self._next_sweep = clock() + self.SWEEP_INTERVAL

    # events

    def publish(self, channel: str, message: Mapping[str, JSONValue]) -> None:
        payload = _encode(message)
        with self._mutex:
            targets = list(self._subscribers.get(channel, ()))
        for subscription in targets:
            decoded = _decode(payload)  # a private copy for each subscriber
            if decoded is not None:
                subscription.deliver(decoded)

    def subscribe(self, channel: str) -> Subscription:
        subscription = _LocalSubscription(channel, self._unsubscribe)
        with self._mutex:
            self._subscribers.setdefault(channel, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _LocalSubscription) -> None:
        with self._mutex:
            members = self._subscribers.get(subscription.channel, [])
            if subscription in members:
                members.remove(subscription)
            if not members:
                self._subscribers.pop(subscription.channel, None)

    # locks

    def acquire_lock(self, key: str, owner: str, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        with self._mutex:
            now = self._now()
            holder = self._live_lock_owner(key, now)
            if holder is not None and holder != owner:
                return False
            self._locks[key] = (owner, now + ttl_seconds)
            return True

    def release_lock(self, key: str, owner: str) -> bool:
        with self._mutex:
            if self._live_lock_owner(key, self._now()) != owner:
                return False
            del self._locks[key]
            return True

    def lock_owner(self, key: str) -> str | None:
        with self._mutex:
            return self._live_lock_owner(key, self._now())

    def _live_lock_owner(self, key: str, now: float) -> str | None:
        held = self._locks.get(key)
        return held[0] if held is not None and held[1] > now else None

    # rate limiter

    def try_acquire_rate(self, key: str, limit: int, period_seconds: float) -> bool:
        _check_rate(limit, period_seconds)
        with self._mutex:
            now = self._now()
            window = self._windows.setdefault(key, _Window(period_seconds))
            window.period = period_seconds
            window.evict(now)
            if len(window.grants) >= limit:
                return False
            window.grants.append(now)
            return True

    # short-lived state

    def put_state(self, key: str, value: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        with self._mutex:
            self._state[key] = (value, self._now() + ttl_seconds)

    def get_state(self, key: str) -> str | None:
        with self._mutex:
            entry = self._state.get(key)
            return entry[0] if entry is not None and entry[1] > self._now() else None

    def delete_state(self, key: str) -> None:
        with self._mutex:
            self._state.pop(key, None)

    def delete_state_prefix(self, prefix: str) -> int:
        with self._mutex:
            now = self._now()
            doomed = [key for key in self._state if key.startswith(prefix)]
            live = sum(1 for key in doomed if self._state[key][1] > now)
            for key in doomed:
                del self._state[key]
            return live

    # housekeeping

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._mutex:
            subscriptions = [s for members in self._subscribers.values() for s in members]
        for subscription in subscriptions:
            subscription.close()

    def _now(self) -> float:
        """The clock, read under the mutex; purges expired entries now and then."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + self.SWEEP_INTERVAL
        return now

    def _sweep(self, now: float) -> None:
        self._locks = {k: v for k, v in self._locks.items() if v[1] > now}
        self._state = {k: v for k, v in self._state.items() if v[1] > now}
        for window in self._windows.values():
            window.evict(now)
        self._windows = {k: w for k, w in self._windows.items() if w.grants}


# --------------------------------------------------------------------------- Redis

# Lock: take it if free, or refresh it if this owner already holds it - atomically.
_ACQUIRE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Lock: compare-and-delete, so a worker whose lock expired cannot release its successor's.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Sliding-window log on a sorted set (score = grant time in microseconds of the server clock).
# ARGV: limit, window in microseconds, unique member for this grant.
_RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return 1
"""

_SCAN_BATCH = 500


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE_ERRORS as error:
        raise CoordinationUnavailable(f"Redis is unavailable: {error}") from error


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _escape_glob(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH`` pattern."""
    return "".join(f"\\{ch}" if ch in "*?[]^-\\" else ch for ch in text)


class _RedisSubscription:
    """One pub/sub connection; use it from one thread at a time."""

    def __init__(self, pubsub: PubSub, on_close: Callable[[_RedisSubscription], None]) -> None:
        self._pubsub = pubsub
        self._on_close = on_close
        self._closed = False

    def await_confirmation(self, timeout: float) -> None:
        """Block until Redis confirmed the SUBSCRIBE: later publishes are then delivered."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            with _translated_errors():
                raw = self._pubsub.get_message(timeout=remaining)
            if raw is not None and raw.get("type") == "subscribe":
                return
        raise CoordinationUnavailable("Redis did not confirm the subscription in time")

    def get(self, timeout: float) -> Message | None:
        if self._closed:
            return None
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            with _translated_errors():
                raw = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if raw is not None and raw.get("type") == "message":
                message = _decode(raw["data"])
                if message is not None:
                    return message
            if remaining <= 0:
                return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._pubsub.close()
        except _UNAVAILABLE_ERRORS:
            pass  # the connection is gone anyway
        self._on_close(self)


class RedisCoordination:
    """Redis implementation; every key and channel lives under ``<namespace>:``.

    ``timeout`` bounds connecting and every socket read/write, so a vanished Redis turns into
    :class:`CoordinationUnavailable` within about that many seconds.
    """

    def __init__(self, url: str, namespace: str = "dunning", timeout: float = 2.0) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        self.namespace = namespace
        self._timeout = timeout
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
            decode_responses=True,
        )
        self._acquire = self._client.register_script(_ACQUIRE_SCRIPT)
        self._release = self._client.register_script(_RELEASE_SCRIPT)
        self._rate = self._client.register_script(_RATE_SCRIPT)
        self._subscriptions: set[_RedisSubscription] = set()
        self._subscriptions_mutex = threading.Lock()

    def _key(self, kind: str, key: str) -> str:
        return f"{self.namespace}:{kind}:{key}"

    # events

    def publish(self, channel: str, message: Mapping[str, JSONValue]) -> None:
        payload = _encode(message)
        with _translated_errors():
            self._client.publish(self._key("events", channel), payload)

    def subscribe(self, channel: str) -> Subscription:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        subscription = _RedisSubscription(pubsub, self._forget)
        try:
            with _translated_errors():
                pubsub.subscribe(self._key("events", channel))
            subscription.await_confirmation(self._timeout)
        except BaseException:
            subscription.close()
            raise
        with self._subscriptions_mutex:
            self._subscriptions.add(subscription)
        return subscription

    def _forget(self, subscription: _RedisSubscription) -> None:
        with self._subscriptions_mutex:
            self._subscriptions.discard(subscription)

    # locks

    def acquire_lock(self, key: str, owner: str, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        args: list[str | int] = [owner, _milliseconds(ttl_seconds)]
        with _translated_errors():
            return bool(self._acquire(keys=[self._key("lock", key)], args=args))

    def release_lock(self, key: str, owner: str) -> bool:
        with _translated_errors():
            return bool(self._release(keys=[self._key("lock", key)], args=[owner]))

    def lock_owner(self, key: str) -> str | None:
        with _translated_errors():
            value = self._client.get(self._key("lock", key))
        return None if value is None else str(value)

    # rate limiter

    def try_acquire_rate(self, key: str, limit: int, period_seconds: float) -> bool:
        _check_rate(limit, period_seconds)
        window_us = max(1, round(period_seconds * 1_000_000))
        args: list[str | int] = [limit, window_us, uuid.uuid4().hex]  # unique across processes
        with _translated_errors():
            return bool(self._rate(keys=[self._key("rate", key)], args=args))

    # short-lived state

    def put_state(self, key: str, value: str, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        with _translated_errors():
            self._client.set(self._key("state", key), value, px=_milliseconds(ttl_seconds))

    def get_state(self, key: str) -> str | None:
        with _translated_errors():
            value = self._client.get(self._key("state", key))
        return None if value is None else str(value)

    def delete_state(self, key: str) -> None:
        with _translated_errors():
            self._client.delete(self._key("state", key))

    def delete_state_prefix(self, prefix: str) -> int:
        pattern = _escape_glob(self._key("state", prefix)) + "*"
        deleted = 0
        batch: list[str] = []
        with _translated_errors():
            for key in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(str(key))
                if len(batch) >= _SCAN_BATCH:
                    deleted += self._delete(batch)
            deleted += self._delete(batch)
        return deleted

    def _delete(self, batch: list[str]) -> int:
        """DEL the batch (emptying it); returns how many keys still existed."""
        if not batch:
            return 0
        count = cast(int, self._client.delete(*batch))
        batch.clear()
        return count

    # housekeeping

    def ping(self) -> bool:
        """``True`` when Redis answers; ``False`` (never an exception) when it does not."""
        try:
            return bool(self._client.ping())
        except _UNAVAILABLE_ERRORS:
            return False

    def close(self) -> None:
        with self._subscriptions_mutex:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        self._client.close()


def connect_coordination(redis_url: str | None, namespace: str = "dunning") -> Coordination:
    """Redis when a URL is configured, otherwise the in-process implementation."""
    if redis_url:
        return RedisCoordination(redis_url, namespace)
    return LocalCoordination()
