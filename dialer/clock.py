"""Clocks: the real one, and a simulated one that runs faster or is stepped by hand.

The dispatcher, the planner and the simulator read time only through a :class:`Clock`, so the
demo can run several simulated days in seconds and tests can jump the clock forward or back.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Simulated time: ``start`` plus real elapsed time times ``speedup``, plus manual steps.

    ``speedup=0`` freezes the clock so only :meth:`advance` and :meth:`set` move it (tests and
    the event-driven demo); ``speedup=600`` turns one real second into ten simulated minutes.
    """

    def __init__(self, start: datetime, speedup: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start")
        if speedup < 0:
            raise ValueError("speedup must be >= 0")
        self._lock = threading.Lock()
        self._base = start.astimezone(UTC)
        self._speedup = speedup
        self._real_base = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._real_base) * self._speedup
            return self._base + timedelta(seconds=elapsed)

    def advance(self, delta: timedelta) -> datetime:
        """Move simulated time forward (or back, with a negative delta) by ``delta``."""
        with self._lock:
            self._rebase()
            self._base += delta
            return self._base

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (forward or back: the dispatcher must cope with both)."""
        if instant.tzinfo is None:
            raise ValueError("SimulatedClock.set needs a timezone-aware instant")
        with self._lock:
            self._rebase()
            self._base = instant.astimezone(UTC)

    def _rebase(self) -> None:
        real_now = time.monotonic()
        self._base += timedelta(seconds=(real_now - self._real_base) * self._speedup)
        self._real_base = real_now
