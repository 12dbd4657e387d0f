"""Pacing shared by every dialer process: concurrent calls, calls per second, one call per number.

Everything goes through the :class:`~kernel.coordination.Coordination` port, so several
dialer processes on several machines share the limits when Redis is configured, and one
process enforces them in memory otherwise:

* **concurrent calls** - ``max_concurrent_calls`` numbered slot locks per carrier; a call
  holds one from placing until its attempt is final (or the lock's TTL, ``max_call_minutes``,
  ends, should the process die);
* **calls per second** - a sliding-window rate limit per carrier (and one for SMS);
* **one contact at a time per number** - a lock per number digest, so a number shared by a
  household is never called twice at once.

Locks are owned by the attempt's idempotency key, so the attempt's own retry may re-take them
and start-up reconciliation can release them for an attempt a dead process left behind.
When the shared store is unreachable the port raises ``CoordinationUnavailable``: nothing is
reserved on a guess, and the dispatcher stops its tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from kernel.coordination import Coordination


class PaceVerdict(StrEnum):
    GRANTED = "granted"
    NO_CAPACITY = "no_capacity"  # every call slot is taken: stop this tick
    RATE_LIMITED = "rate_limited"  # the per-second budget is spent: stop this tick
    NUMBER_BUSY = "number_busy"  # that number is on another call right now: postpone


def rate_window(per_second: float) -> tuple[int, float]:
    """``per_second`` as (permits, period): 5/s -> (5, 1.0); 0.5/s -> (1, 2.0)."""
    permits = max(1, round(per_second))
    return permits, permits / per_second


def number_lock_key(number_digest: str) -> str:
    return f"number:{number_digest}"


def slot_state_key(carrier: str, owner: str) -> str:
    return f"slot-of:{carrier}:{owner}"


def slot_lock_key(carrier: str, index: int) -> str:
    return f"slot:{carrier}:{index}"


@dataclass
class Pacer:
    """Reservations of one dialer process against the shared limits of one carrier."""

    coordination: Coordination
    carrier: str
    max_concurrent_calls: int
    calls_per_second: float
    hold_seconds: float
    sms_per_second: float = 10.0
    held: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    _next_slot: int = field(default_factory=lambda: random.randrange(1 << 30))

    def reserve_call(self, attempt_id: int, owner: str, number_digest: str) -> PaceVerdict:
        """Take a call slot, the number's lock and one per-second permit, or nothing."""
        if not self._take_slot(owner):
            return PaceVerdict.NO_CAPACITY
        number_key = number_lock_key(number_digest)
        if not self.coordination.acquire_lock(number_key, owner, self.hold_seconds):
            self._release_slot(owner)
            return PaceVerdict.NUMBER_BUSY
        permits, period = rate_window(self.calls_per_second)
        if not self.coordination.try_acquire_rate(f"cps:{self.carrier}", permits, period):
            self.coordination.release_lock(number_key, owner)
            self._release_slot(owner)
            return PaceVerdict.RATE_LIMITED
        self.held[attempt_id] = (owner, number_digest)
        return PaceVerdict.GRANTED

    def reserve_sms(self) -> PaceVerdict:
        permits, period = rate_window(self.sms_per_second)
        granted = self.coordination.try_acquire_rate(f"sms:{self.carrier}", permits, period)
        return PaceVerdict.GRANTED if granted else PaceVerdict.RATE_LIMITED

    def release(self, attempt_id: int) -> None:
        """Give back what a finished (or never placed) call held."""
        entry = self.held.pop(attempt_id, None)
        if entry is not None:
            owner, digest = entry
            release_attempt(self.coordination, self.carrier, owner, digest)

    def release_finished(self, still_open: set[int]) -> int:
        """Release every reservation whose attempt is no longer in flight; returns how many."""
        finished = [attempt_id for attempt_id in self.held if attempt_id not in still_open]
        for attempt_id in finished:
            self.release(attempt_id)
        return len(finished)

    @property
    def local_free(self) -> int:
        """Slots this process could still use if no other process held any (a claim hint)."""
        return max(0, self.max_concurrent_calls - len(self.held))

    def _take_slot(self, owner: str) -> bool:
        if self._refresh_own_slot(owner):
            return True
        size = self.max_concurrent_calls
        start = self._next_slot
        for offset in range(size):
            index = (start + offset) % size
            if self.coordination.acquire_lock(
                slot_lock_key(self.carrier, index), owner, self.hold_seconds
            ):
                self._next_slot = index + 1
                state_key = slot_state_key(self.carrier, owner)
                self.coordination.put_state(state_key, str(index), self.hold_seconds)
                return True
        return False

    def _refresh_own_slot(self, owner: str) -> bool:
        """An attempt retried with the same key keeps the slot it already holds."""
        index = self.coordination.get_state(slot_state_key(self.carrier, owner))
        if index is None:
            return False
        key = slot_lock_key(self.carrier, int(index))
        return self.coordination.acquire_lock(key, owner, self.hold_seconds)

    def _release_slot(self, owner: str) -> None:
        release_slot(self.coordination, self.carrier, owner)


def release_slot(coordination: Coordination, carrier: str, owner: str) -> None:
    state_key = slot_state_key(carrier, owner)
    index = coordination.get_state(state_key)
    if index is not None:
        coordination.release_lock(slot_lock_key(carrier, int(index)), owner)
        coordination.delete_state(state_key)


def release_attempt(
    coordination: Coordination, carrier: str, owner: str, number_digest: str | None
) -> None:
    """Release an attempt's call slot and number lock (no-op for locks it does not own)."""
    release_slot(coordination, carrier, owner)
    if number_digest is not None:
        coordination.release_lock(number_lock_key(number_digest), owner)
