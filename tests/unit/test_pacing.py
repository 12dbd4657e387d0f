"""Pacing on the in-process coordination (the Redis one passes the same port tests)."""

from __future__ import annotations

import pytest

from dialer.pacing import Pacer, PaceVerdict, rate_window
from kernel.coordination import LocalCoordination


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def pacer(clock: FakeTime, coordination: LocalCoordination | None = None, **kw: float) -> Pacer:
    options = {"max_concurrent_calls": 2, "calls_per_second": 100.0, "hold_seconds": 60.0}
    options.update(kw)
    return Pacer(coordination or LocalCoordination(clock), "fake", **options)  # type: ignore[arg-type]


def test_rate_window() -> None:
    assert rate_window(5) == (5, 1.0)
    assert rate_window(0.5) == (1, 2.0)
    permits, period = rate_window(2.5)
    assert permits / period == pytest.approx(2.5)


def test_concurrent_slots_are_shared_between_processes(clock: FakeTime) -> None:
    shared = LocalCoordination(clock)
    one, two = pacer(clock, shared), pacer(clock, shared)
    assert one.reserve_call(1, "k1", "n1") is PaceVerdict.GRANTED
    assert two.reserve_call(2, "k2", "n2") is PaceVerdict.GRANTED
    assert two.reserve_call(3, "k3", "n3") is PaceVerdict.NO_CAPACITY
    one.release(1)
    assert two.reserve_call(3, "k3", "n3") is PaceVerdict.GRANTED


def test_one_call_per_number(clock: FakeTime) -> None:
    shared = LocalCoordination(clock)
    one, two = pacer(clock, shared), pacer(clock, shared)
    assert one.reserve_call(1, "k1", "household") is PaceVerdict.GRANTED
    assert two.reserve_call(2, "k2", "household") is PaceVerdict.NUMBER_BUSY
    assert two.held == {}  # the slot it took was given back
    assert two.reserve_call(3, "k3", "other") is PaceVerdict.GRANTED


def test_calls_per_second(clock: FakeTime) -> None:
    paced = pacer(clock, max_concurrent_calls=10, calls_per_second=2)
    verdicts = [paced.reserve_call(i, f"k{i}", f"n{i}") for i in range(3)]
    assert verdicts == [PaceVerdict.GRANTED, PaceVerdict.GRANTED, PaceVerdict.RATE_LIMITED]
    assert len(paced.held) == 2
    clock.now += 1.01
    assert paced.reserve_call(9, "k9", "n9") is PaceVerdict.GRANTED


def test_a_retry_with_the_same_key_keeps_its_slot(clock: FakeTime) -> None:
    paced = pacer(clock, max_concurrent_calls=1)
    assert paced.reserve_call(1, "same", "n1") is PaceVerdict.GRANTED
    assert paced.reserve_call(1, "same", "n1") is PaceVerdict.GRANTED


def test_a_dead_process_slots_expire(clock: FakeTime) -> None:
    shared = LocalCoordination(clock)
    dead, alive = (
        pacer(clock, shared, max_concurrent_calls=1),
        pacer(clock, shared, max_concurrent_calls=1),
    )
    assert dead.reserve_call(1, "k1", "n1") is PaceVerdict.GRANTED
    assert alive.reserve_call(2, "k2", "n2") is PaceVerdict.NO_CAPACITY
    clock.now += 61
    assert alive.reserve_call(2, "k2", "n2") is PaceVerdict.GRANTED


def test_release_finished(clock: FakeTime) -> None:
    paced = pacer(clock)
    paced.reserve_call(1, "k1", "n1")
    paced.reserve_call(2, "k2", "n2")
    assert paced.release_finished({2}) == 1
    assert set(paced.held) == {2}
