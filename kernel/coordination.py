"""What several processes must agree on: live events, per-key locks, rate limits, short state.

One small port, :class:`Coordination`, with two implementations that pass the same tests:

* :class:`LocalCoordination` - the single-machine default without Redis: everything lives in
  this process, guarded by one mutex, timed by an injectable monotonic clock.
* :class:`~kernel.redis_coordination.RedisCoordination` (in its own module) - many web and
  dialer processes on several machines, sharing one Redis. The composition root
  (:func:`dunning.wiring.connect_coordination`) picks it when a Redis URL is configured.

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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from kernel.errors import DunningError

JSONValue: TypeAlias = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]
Message: TypeAlias = dict[str, JSONValue]

Clock: TypeAlias = Callable[[], float]

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


def encode_message(message: Mapping[str, JSONValue]) -> str:
    """Strict JSON (no NaN/Infinity: the browser console could not parse it)."""
    return json.dumps(dict(message), ensure_ascii=False, allow_nan=False)


def decode_message(payload: str) -> Message | None:
    """The message, or ``None`` for a payload that is not a JSON object (not one of ours)."""
    try:
        loaded = json.loads(payload)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")


def check_rate(limit: int, period_seconds: float) -> None:
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
        payload = encode_message(message)
        with self._mutex:
            targets = list(self._subscribers.get(channel, ()))
        for subscription in targets:
            decoded = decode_message(payload)  # a private copy for each subscriber
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
        check_ttl(ttl_seconds)
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
        check_rate(limit, period_seconds)
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
        check_ttl(ttl_seconds)
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
