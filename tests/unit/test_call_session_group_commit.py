"""The group commit's writer thread: batches of what queued up, each report its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from dialer.call_batches import GroupCommitter


class Recorder:
    """A batch handler that waits at a gate, so reports can queue up behind the first."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.entered.set()
        self.gate.wait(5)
        self.batches.append(list(items))
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


def test_a_lone_report_is_handled_at_once() -> None:
    handler = Recorder()
    writer = GroupCommitter(handler)
    assert writer.submit("a").result(timeout=5) == "A"
    assert handler.batches == [["a"]]


def test_reports_that_queue_up_are_handled_together_in_arrival_order() -> None:
    handler = Recorder()
    handler.gate.clear()
    writer = GroupCommitter(handler, max_batch=3)
    first = writer.submit("first")
    assert handler.entered.wait(5)  # the writer holds "first" at the gate; the rest queue
    later = [writer.submit(name) for name in ("b1", "b2", "b3", "c1")]
    handler.gate.set()
    assert first.result(timeout=5) == "FIRST"
    assert [future.result(timeout=5) for future in later] == ["B1", "B2", "B3", "C1"]
    assert handler.batches == [["first"], ["b1", "b2", "b3"], ["c1"]]


def test_under_load_the_writer_lingers_for_more_reports() -> None:
    handler = Recorder()
    handler.gate.clear()
    writer = GroupCommitter(handler, max_batch=3, linger_seconds=2.0, load_batch=2)
    first = writer.submit("first")
    assert handler.entered.wait(5)
    queued = [writer.submit(name) for name in ("b1", "b2")]  # load: they queue up
    handler.gate.set()
    assert [f.result(timeout=5) for f in (first, *queued)] == ["FIRST", "B1", "B2"]
    lingering = writer.submit("c1")  # the last batch held two (load): it waits for company
    time.sleep(0.05)
    joining = [writer.submit(name) for name in ("c2", "c3")]  # full: no need to wait it out
    assert [f.result(timeout=1.5) for f in (lingering, *joining)] == ["C1", "C2", "C3"]
    assert handler.batches == [["first"], ["b1", "b2"], ["c1", "c2", "c3"]]


def test_reports_that_come_one_at_a_time_do_not_wait_for_company() -> None:
    handler = Recorder()
    writer = GroupCommitter(handler, linger_seconds=30.0, load_batch=2)
    assert writer.submit("a").result(timeout=5) == "A"  # far less than the linger
    assert writer.submit("b").result(timeout=5) == "B"
    assert handler.batches == [["a"], ["b"]]


def test_moderate_load_does_not_linger() -> None:
    handler = Recorder()
    handler.gate.clear()
    writer = GroupCommitter(handler, linger_seconds=30.0, load_batch=3)
    first = writer.submit("first")
    assert handler.entered.wait(5)
    queued = [writer.submit(name) for name in ("b1", "b2")]  # a batch of two: below the load
    handler.gate.set()
    assert [f.result(timeout=5) for f in (first, *queued)] == ["FIRST", "B1", "B2"]
    assert writer.submit("c").result(timeout=5) == "C"  # far less than the linger
    assert handler.batches == [["first"], ["b1", "b2"], ["c"]]


def test_each_report_gets_its_own_exception() -> None:
    writer = GroupCommitter(Recorder())
    good, bad = writer.submit("good"), writer.submit("bad one")
    assert good.result(timeout=5) == "GOOD"
    with pytest.raises(ValueError, match="bad one"):
        bad.result(timeout=5)


class FailsFirstBatch:
    """A batch handler whose first batch fails as a whole; later ones echo their items."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("database gone")
        return list(items)


def test_a_failing_batch_fails_every_report_of_it_and_the_writer_goes_on() -> None:
    writer = GroupCommitter(FailsFirstBatch())
    with pytest.raises(RuntimeError, match="database gone"):
        writer.submit("x").result(timeout=5)
    assert writer.submit("y").result(timeout=5) == "y"


def test_a_handler_must_answer_every_report() -> None:
    writer: GroupCommitter[str, str] = GroupCommitter(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for a batch of 1"):
        writer.submit("x").result(timeout=5)


def test_the_writer_thread_ends_when_idle_and_comes_back() -> None:
    writer = GroupCommitter(Recorder(), idle_seconds=0.05, name="test-writer-idle")

    def writers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "test-writer-idle"]

    assert writer.submit("a").result(timeout=5) == "A"
    deadline = time.monotonic() + 5
    while writers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writers() == []
    assert writer.submit("b").result(timeout=5) == "B"


def test_a_reply_that_fails_does_not_stop_the_writer(caplog: pytest.LogCaptureFixture) -> None:
    writer = GroupCommitter(Recorder())

    def broken(_result: object) -> None:
        raise RuntimeError("event loop is closed")

    writer.submit_to("lost", broken)
    assert writer.submit("next").result(timeout=5) == "NEXT"
    assert "a reply failed" in caplog.text


def test_replies_come_with_the_result_or_the_exception() -> None:
    writer = GroupCommitter(Recorder())
    answers: list[object] = []
    done = threading.Event()

    def reply(result: object) -> None:
        answers.append(result)
        if len(answers) == 2:
            done.set()

    writer.submit_to("ok", reply)
    writer.submit_to("bad", reply)
    assert done.wait(5)
    assert answers[0] == "OK" and isinstance(answers[1], ValueError)
