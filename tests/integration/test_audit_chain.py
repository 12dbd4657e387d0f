"""The audit chain detects every kind of tampering, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kernel import audit
from kernel.db import Database
from kernel.errors import InvalidInput


def _write_events(database: Database, count: int = 5) -> None:
    with database.unit_of_work() as session:
        for index in range(count):
            audit.record(
                session,
                actor=f"user:{index % 2 + 1}",
                action="person.viewed",
                object_type="person",
                object_id=index + 1,
                detail={"page": "call_screen", "campaign_id": 3},
            )


def _verify(database: Database) -> audit.ChainReport:
    with database.read_only() as session:
        return audit.verify_chain(session)


def test_intact_chain_verifies(database: Database) -> None:
    _write_events(database)
    report = _verify(database)
    assert report.ok
    assert report.events_checked == 5
    assert report.head_hash != audit.GENESIS_HASH


def test_empty_chain_verifies(database: Database) -> None:
    assert _verify(database) == audit.ChainReport(True, 0, audit.GENESIS_HASH)


def test_each_event_links_to_the_previous(database: Database) -> None:
    _write_events(database, 3)
    with database.read_only() as session:
        events = list(audit.iter_events(session))
    assert events[0].prev_hash == audit.GENESIS_HASH
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_events SET actor = 'user:9' WHERE id = 3",
        "UPDATE audit_events SET object_id = '99' WHERE id = 3",
        "UPDATE audit_events SET action = 'person.exported' WHERE id = 3",
    ],
)
def test_edited_event_is_detected(database: Database, tamper: str) -> None:
    _write_events(database)
    with database.engine.begin() as connection:
        connection.execute(text(tamper))
    report = _verify(database)
    assert not report.ok
    assert report.first_bad_id == 3
    assert report.problem == "content does not match hash"


def test_deleted_event_is_detected(database: Database) -> None:
    _write_events(database)
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE id = 2"))
    report = _verify(database)
    assert not report.ok
    assert report.first_bad_id == 3
    assert report.problem == "link to previous broken"


def test_rehashed_edit_still_breaks_the_next_link(database: Database) -> None:
    """Someone who recomputes the edited event's own hash still breaks its successor."""
    _write_events(database)
    with database.read_only() as session:
        target = list(audit.iter_events(session))[1]
        forged = audit.event_hash(
            target.prev_hash,
            target.occurred_at,
            "user:9",
            target.action,
            target.object_type,
            target.object_id,
            target.detail,
        )
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_events SET actor = 'user:9', hash = :h WHERE id = :i"),
            {"h": forged, "i": target.id},
        )
    report = _verify(database)
    assert not report.ok
    assert report.first_bad_id == target.id + 1


@pytest.mark.parametrize(
    "detail",
    [
        {"name": "山田太郎"},
        {"phone": "09012345678"},
        {"note": "called and promised to pay"},
        {"bad key!": 1},
    ],
)
def test_personal_values_are_refused(database: Database, detail: dict[str, str | int]) -> None:
    with pytest.raises(InvalidInput), database.unit_of_work() as session:
        audit.record(
            session, actor="user:1", action="x.y", object_type="person", object_id=1, detail=detail
        )
    assert _verify(database).events_checked == 0


def test_object_id_must_not_be_a_resident_number(database: Database) -> None:
    with pytest.raises(InvalidInput), database.unit_of_work() as session:
        audit.record(
            session,
            actor="user:1",
            action="person.viewed",
            object_type="person",
            object_id="0123456789",
        )
