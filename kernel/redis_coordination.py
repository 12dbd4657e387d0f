"""The Redis implementation of the coordination port (:mod:`kernel.coordination`).

Many web and dialer processes on several machines. Every key lives under ``<namespace>:``;
locks are ``SET NX PX`` plus a Lua compare-and-delete; the rate limiter is a Lua sliding window
timed by the Redis server's ``TIME`` so processes on machines with different clocks agree;
events are Redis pub/sub with JSON payloads. When Redis cannot be reached every call (except
``ping``, which answers ``False``) raises
:class:`~kernel.coordination.CoordinationUnavailable`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from kernel.coordination import (
    CoordinationUnavailable,
    JSONValue,
    Message,
    Subscription,
    check_rate,
    check_ttl,
    decode_message,
    encode_message,
)

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
                message = decode_message(raw["data"])
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
        payload = encode_message(message)
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
        check_ttl(ttl_seconds)
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
        check_rate(limit, period_seconds)
        window_us = max(1, round(period_seconds * 1_000_000))
        args: list[str | int] = [limit, window_us, uuid.uuid4().hex]  # unique across processes
        with _translated_errors():
            return bool(self._rate(keys=[self._key("rate", key)], args=args))

    # short-lived state

    def put_state(self, key: str, value: str, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
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
