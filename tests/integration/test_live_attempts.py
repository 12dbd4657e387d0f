"""The call session's plain attempts: locked and read as values, changes written back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from dialer.live_attempts import lock_attempts, write_changes
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Channel
from kernel.pii import KeyRing
from tests.contract.seed import MASTER_SECRET, seed_campaign

AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def test_changes_are_written_per_set_of_columns_and_nothing_else(database: Database) -> None:
    seeded = seed_campaign(database, KeyRing(MASTER_SECRET), ["a", "b", "c"])
    ids = [seeded.attempt_ids[name] for name in "abc"]
    updates: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    sa_event.listen(database.engine, "before_cursor_execute", count)
    try:
        with database.unit_of_work() as session:
            a, b, c = (lock_attempts(session, ids)[i] for i in ids)
            assert a.channel is Channel.IVR and a.status is AttemptStatus.CLAIMED
            a.update(status=AttemptStatus.IN_PROGRESS, answered_at=AT)
            b.update(answered_at=AT, status=AttemptStatus.IN_PROGRESS)  # same columns as a
            c.update(outcome_code="rpc_confirmed")
            write_changes(session, [a, b, c])
            assert not a.changed and not c.changed
            write_changes(session, [a, b, c])  # nothing changed since: nothing sent
    finally:
        sa_event.remove(database.engine, "before_cursor_execute", count)
    assert len(updates) == 2  # one executemany for a and b, one for c
    with database.read_only() as session:
        stored = {i: session.get(Attempt, i) for i in ids}
    first, second, third = (stored[i] for i in ids)
    assert first is not None and second is not None and third is not None
    assert first.status is AttemptStatus.IN_PROGRESS and first.answered_at == AT
    assert second.status is AttemptStatus.IN_PROGRESS and second.answered_at == AT
    assert third.status is AttemptStatus.CLAIMED and third.answered_at is None
    assert third.outcome_code == "rpc_confirmed" and first.outcome_code is None


def test_only_known_columns_change_and_missing_attempts_are_an_error(database: Database) -> None:
    seeded = seed_campaign(database, KeyRing(MASTER_SECRET), ["a"])
    attempt_id = seeded.attempt_ids["a"]
    with database.unit_of_work() as session:
        attempt = lock_attempts(session, [attempt_id])[attempt_id]
        with pytest.raises(AttributeError, match="sealed_notes"):
            attempt.update(sealed_notes=b"x")
        assert not attempt.changed
        with pytest.raises(LookupError, match=str(attempt_id + 1000)):
            lock_attempts(session, [attempt_id, attempt_id + 1000])
