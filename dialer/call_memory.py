"""What one process remembers about its live calls between two carrier reports.

Two small, bounded, thread-safe caches that spare :class:`~dialer.call_session.CallSession`
database work on every webhook of a call after the first:

* :class:`CallIndex` - an attempt key or carrier reference -> ``(attempt_id, campaign_id)``.
  Both keys are opaque identifiers (no personal data) and the mapping never changes once an
  attempt exists (``idempotency_key`` is unique; a carrier reference is bound once), so entries
  need no expiry, only a size bound.
* :class:`ContextCache` - ``attempt_id`` -> the call's opened :class:`~ivr_scripts.CallContext`
  (it holds the resident's name reading and, at ``detail`` disclosure, the birth month-day) and
  the campaign's flow name. Personal values live only here, in this process's memory: never in
  coordination, logs or URLs. An entry is dropped when its call ends, when it is older than
  its time to live, when the attempt lost its person (the campaign was wiped) and when the
  cache is full (the oldest first), so a call that outlives its entry just opens the sealed
  record again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ivr_scripts import CallContext

MonotonicClock = Callable[[], float]

CALL_INDEX_SIZE = 50_000
CONTEXT_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class CallIds:
    attempt_id: int
    campaign_id: int


class CallIndex:
    """Attempt key / carrier reference -> the attempt's ids (least recently used dropped)."""

    def __init__(self, size: int = CALL_INDEX_SIZE) -> None:
        self._size = size
        self._ids: OrderedDict[str, CallIds] = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, name: str) -> CallIds | None:
        with self._mutex:
            ids = self._ids.get(name)
            if ids is not None:
                self._ids.move_to_end(name)
            return ids

    def put(self, name: str, ids: CallIds) -> None:
        with self._mutex:
            self._ids[name] = ids
            self._ids.move_to_end(name)
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class OpenedCall:
    """A call's opened context (personal values: memory only) and the flow it follows."""

    script_name: str
    context: CallContext


@dataclass(frozen=True)
class _Entry:
    call: OpenedCall
    expires_at: float


class ContextCache:
    """``attempt_id`` -> :class:`OpenedCall` for the life of the call, at most ``ttl_seconds``.

    Entries are kept in insertion order and all live for the same time, so the expired ones
    are always at the front: every access sweeps them away in O(expired).
    """

    def __init__(
        self,
        ttl_seconds: float,
        size: int = CONTEXT_CACHE_SIZE,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._ttl = ttl_seconds
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, attempt_id: int) -> OpenedCall | None:
        with self._mutex:
            self._sweep(self._clock())
            entry = self._entries.get(attempt_id)
            return None if entry is None else entry.call

    def put(self, attempt_id: int, call: OpenedCall) -> None:
        with self._mutex:
            now = self._clock()
            self._sweep(now)
            self._entries.pop(attempt_id, None)  # re-inserted at the back: order = expiry
            self._entries[attempt_id] = _Entry(call, now + self._ttl)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def drop(self, attempt_id: int) -> None:
        with self._mutex:
            self._entries.pop(attempt_id, None)

    def __len__(self) -> int:
        with self._mutex:
            self._sweep(self._clock())
            return len(self._entries)

    def __contains__(self, attempt_id: object) -> bool:
        with self._mutex:
            self._sweep(self._clock())
            return attempt_id in self._entries

    def _sweep(self, now: float) -> None:
        while self._entries:
            attempt_id, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            del self._entries[attempt_id]
