"""The attempts one unit of work of the call session holds, as plain values.

The call session locks the attempts of a batch of carrier reports, changes a few columns of
each (status, times, outcome) and writes them back before the commit. ORM entities cost more
than the rest of a report's handling together: building and tracking them, then the flush
working out what changed. :func:`lock_attempts` reads the columns the session uses with a row
lock (``FOR UPDATE`` on PostgreSQL; SQLite holds the database's write lock for the unit of
work) into :class:`LiveAttempt` values; :meth:`LiveAttempt.update` records what changed;
:func:`write_changes` sends one executemany per set of changed columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from kernel.models import Attempt, AttemptStatus, Channel


@dataclass(slots=True)
class LiveAttempt:
    """The columns of an attempt the call session reads or changes (field names are the
    ``attempts`` columns). Change them through :meth:`update` only, so they are written."""

    id: int
    campaign_id: int
    person_id: int | None
    phone_id: int | None
    channel: Channel
    status: AttemptStatus
    scheduled_at: datetime
    idempotency_key: str
    carrier_ref: str | None
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    outcome_code: str | None
    carrier_result: str | None
    refusal_reason: str | None
    operator_id: int | None
    promise_date: date | None
    promise_amount_yen: int | None
    identity_confirmed_at: datetime | None
    changed: set[str] = field(default_factory=set)

    def update(self, **values: object) -> None:
        """Sets columns and remembers them for :func:`write_changes`."""
        unknown = sorted(values.keys() - set(_COLUMNS))
        if unknown:  # checked first: a bad call changes nothing
            raise AttributeError(f"attempts has no column {', '.join(unknown)} here")
        for name, value in values.items():
            setattr(self, name, value)
            self.changed.add(name)


_COLUMNS = tuple(f.name for f in fields(LiveAttempt) if f.name != "changed")
_TABLE = Attempt.__table__
assert isinstance(_TABLE, Table)
_LOCK = (
    select(*(_TABLE.c[name] for name in _COLUMNS))
    .where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
# The SET clause comes from each executemany's parameter names (one set of columns per call).
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam("attempt_id"))


def lock_attempts(session: Session, attempt_ids: Sequence[int]) -> dict[int, LiveAttempt]:
    """The attempts by id, locked for the rest of the unit of work; every id must exist."""
    rows = session.connection().execute(_LOCK, {"ids": list(attempt_ids)})
    attempts = {row.id: LiveAttempt(*row) for row in rows.all()}
    missing = set(attempt_ids) - attempts.keys()
    if missing:
        raise LookupError(f"attempts {sorted(missing)} are gone")
    return attempts


def write_changes(session: Session, attempts: Iterable[LiveAttempt]) -> None:
    """Writes what :meth:`LiveAttempt.update` changed, one executemany per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for attempt in attempts:
        if not attempt.changed:
            continue
        names = tuple(sorted(attempt.changed))
        values = {name: getattr(attempt, name) for name in names}
        groups.setdefault(names, []).append({"attempt_id": attempt.id, **values})
        attempt.changed.clear()
    connection = session.connection()
    for rows in groups.values():
        connection.execute(_UPDATE, rows)
