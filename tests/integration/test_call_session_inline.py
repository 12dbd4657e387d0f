"""CallSession.handle_now: a batch handled on the caller's event loop when nothing has to
wait - SQLite with in-process coordination only - and declined, untouched, otherwise."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from dialer.call_session import CallSession
from dialer.ports import AnsweredBy, CallEvent, CallStatus
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import BUSY_TIMEOUT_MS, Database
from kernel.models import AttemptStatus
from kernel.pii import KeyRing
from tests.integration.test_call_session import (
    Call,
    _call,
    _counted,
    _event,
    _kinds,
    _second_call,
    coordination,
    keyring,
)

__all__ = ["coordination", "keyring"]  # fixtures used by the tests below

ANSWERED = {"status": CallStatus.IN_PROGRESS, "answered_by": AnsweredBy.HUMAN}


@pytest.fixture
def inline(sqlite_database: Database, keyring: KeyRing) -> Call:
    """A call whose session batches inline (SQLite, in-process coordination)."""
    return _call(sqlite_database, LocalCoordination(), keyring)


def _busy_timeout(database: Database) -> int:
    with database.engine.connect() as connection:  # LIFO: the connection used last
        return int(connection.execute(text("PRAGMA busy_timeout")).scalar_one())


@pytest.fixture
def write_lock(inline: Call) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock (as another process would)."""
    path = make_url(inline.database.url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_only_sqlite_with_in_process_coordination_batches_inline(
    database: Database, coordination: Coordination, keyring: KeyRing
) -> None:
    call = _call(database, coordination, keyring)
    expected = database.engine.dialect.name == "sqlite" and isinstance(
        coordination, LocalCoordination
    )
    assert call.sink.batches_inline is expected
    if not expected:  # a network round trip would stall the event loop: declined, untouched
        assert call.sink.handle_now([_event(call, 1, **ANSWERED)]) is None
        assert call.attempt().status is AttemptStatus.CLAIMED
        assert call.state() is None


def test_an_inline_batch_runs_the_flow_as_the_writer_thread_would(inline: Call) -> None:
    other = _second_call(inline)
    greetings = inline.sink.handle_now([_event(c, 1, **ANSWERED) for c in (inline, other)])
    assert greetings is not None
    assert [_kinds(g)[-1] for g in greetings if isinstance(g, list)] == ["Gather", "Gather"]
    ends = inline.sink.handle_now(
        [
            _event(inline, 2, digits="1"),
            _event(other, 2, digits="2"),  # not the person
            _event(inline, 3, status=CallStatus.COMPLETED, duration_seconds=30),
            _event(other, 3, status=CallStatus.COMPLETED, duration_seconds=10),
        ]
    )
    assert ends is not None and all(isinstance(e, list) for e in ends)
    assert inline.attempt().status is other.attempt().status is AttemptStatus.COMPLETED
    assert inline.attempt().outcome_code == "rpc_confirmed"
    assert other.attempt().outcome_code == "wrong_party"
    assert _counted(inline.database, "attempts.ivr") == 2
    assert _busy_timeout(inline.database) == BUSY_TIMEOUT_MS  # restored before the commit


def test_unknown_calls_in_an_inline_batch_are_counted_once(inline: Call) -> None:
    stranger = CallEvent("CAother", inline.attempt().scheduled_at, digits="1", attempt_key="nope")
    assert inline.sink.handle_now([stranger]) == [[]]
    assert inline.sink.warnings["unknown_call"] == 1


def test_a_locked_database_declines_the_batch_at_once_and_changes_nothing(
    inline: Call, write_lock: sqlite3.Connection
) -> None:
    started = time.monotonic()
    assert inline.sink.handle_now([_event(inline, 1, **ANSWERED)]) is None
    # not the busy handler's wait: the loop must not stall behind another writer
    assert time.monotonic() - started < BUSY_TIMEOUT_MS / 1000 / 2
    assert _busy_timeout(inline.database) == BUSY_TIMEOUT_MS
    write_lock.execute("ROLLBACK")
    assert inline.attempt().status is AttemptStatus.CLAIMED and inline.state() is None
    # the writer thread takes the report and waits for the lock as before
    future = inline.sink.submit_call_event(_event(inline, 1, **ANSWERED))
    assert _kinds(future.result(timeout=30))[-1] == "Gather"
    assert inline.attempt().status is AttemptStatus.IN_PROGRESS


def test_the_writer_thread_waits_for_a_lock_the_loop_would_not(
    inline: Call, write_lock: sqlite3.Connection
) -> None:
    future = inline.sink.submit_call_event(_event(inline, 1, **ANSWERED))
    time.sleep(0.2)  # the writer is waiting in SQLite's busy handler
    assert not future.done()
    write_lock.execute("ROLLBACK")
    assert _kinds(future.result(timeout=30))[-1] == "Gather"


def test_a_call_locked_elsewhere_declines_the_batch(inline: Call) -> None:
    key = f"ivr-call:{inline.attempt_id}"
    assert inline.coordination.acquire_lock(key, "another-holder", 30)
    assert inline.sink.handle_now([_event(inline, 1, **ANSWERED)]) is None
    assert inline.attempt().status is AttemptStatus.CLAIMED
    inline.coordination.release_lock(key, "another-holder")
    handled = inline.sink.handle_now([_event(inline, 1, **ANSWERED)])
    assert handled is not None and _kinds(handled[0])[-1] == "Gather"  # type: ignore[arg-type]


def test_reports_queued_for_the_writer_thread_come_first(inline: Call) -> None:
    other = _second_call(inline)
    key = f"ivr-call:{other.attempt_id}"
    assert inline.coordination.acquire_lock(key, "another-holder", 30)
    queued = inline.sink.submit_call_event(_event(other, 1, **ANSWERED))  # waits for the lock
    time.sleep(0.05)
    assert inline.sink.handle_now([_event(inline, 1, **ANSWERED)]) is None
    threading.Timer(0.05, inline.coordination.release_lock, (key, "another-holder")).start()
    assert _kinds(queued.result(timeout=30))[-1] == "Gather"
    handled = inline.sink.handle_now([_event(inline, 1, **ANSWERED)])
    assert handled is not None


def test_a_failing_inline_batch_is_declined_whole_for_the_writer_thread(
    sqlite_database: Database, keyring: KeyRing
) -> None:
    class FailsOnce(CallSession):
        failed = False

        def _handle(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            if not self.failed:
                self.failed = True
                raise RuntimeError("this batch cannot be saved")
            return super()._handle(*args, **kwargs)  # type: ignore[arg-type]

    call = _call(sqlite_database, LocalCoordination(), keyring)
    sink = FailsOnce(sqlite_database, call.coordination, keyring, call.sink._settings)
    assert sink.handle_now([_event(call, 1, **ANSWERED)]) is None  # nothing saved, no retry
    assert call.attempt().status is AttemptStatus.CLAIMED
    assert _kinds(sink.submit_call_event(_event(call, 1, **ANSWERED)).result(30))[-1] == "Gather"


def test_the_warnings_of_a_declined_batch_are_counted_once(
    inline: Call, write_lock: sqlite3.Connection
) -> None:
    other = _second_call(inline)
    retried = replace(_event(inline, 1, **ANSWERED), raw={"idempotency_token": "retry-1"})
    write_lock.execute("ROLLBACK")
    assert inline.sink.handle_now([retried]) is not None
    write_lock.execute("BEGIN IMMEDIATE")  # another writer, while Twilio retries
    batch = [retried, _event(other, 1, **ANSWERED)]
    assert inline.sink.handle_now(batch) is None  # the repeat was seen, then the batch declined
    write_lock.execute("ROLLBACK")
    results = [inline.sink.submit_call_event(event).result(timeout=30) for event in batch]
    assert results[0] == [] and _kinds(results[1])[-1] == "Gather"
    assert inline.sink.warnings["repeated_event"] == 1
