"""The database side of the wipe (R-11): what is erased, set-based and batched, and the
storage compaction that follows.

* rows deleted: the campaign's persons, phones and receivables (:data:`DELETED_MODELS`);
* personal columns nulled in every other campaign table, found from the models: a column
  ``person_id``/``phone_id``, any ``sealed_*`` column and :data:`EXTRA_PERSONAL`, so a new
  table with such columns is covered without a change here (:func:`scrub_plan`);
* open work closed (attempts and callbacks cancelled, hand-offs closed).

Per-row foreign-key work dominates a large wipe (1M persons x 5 referencing tables). When
the wipe itself nulls or deletes every reference (:func:`references_handled`) and nothing
outside the campaign points at its rows (:func:`assert_no_outside_references`), the checks
are switched off for the erasing transaction: SQLite ``PRAGMA foreign_keys=OFF`` on that
connection (restored when it returns to the pool); PostgreSQL ``SET LOCAL
session_replication_role = replica`` where the role may set it (superuser, or PostgreSQL 15+
``GRANT SET ON PARAMETER``), otherwise the database keeps checking, which is slower but
equally correct. The SQLite connection also gets a large page cache for the transaction.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Result, Table, delete, event, func, literal, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kernel.db import Database
from kernel.errors import IntegrityViolation
from kernel.models import (
    Attempt,
    AttemptStatus,
    Base,
    CallbackRequest,
    CallbackStatus,
    HandOff,
    HandOffStatus,
    Person,
    Phone,
    Receivable,
)

log = logging.getLogger(__name__)

DELETED_MODELS: tuple[type[Base], ...] = (Receivable, Phone, Person)  # children first
REFERENCE_COLUMNS = frozenset({"person_id", "phone_id"})
SEALED_PREFIX = "sealed_"
# Plain columns that are personal in their table: amounts and dates a resident promised, the
# carrier's call id (the carrier can map it to the number).
EXTRA_PERSONAL: dict[str, frozenset[str]] = {
    "attempts": frozenset({"carrier_ref", "promise_date", "promise_amount_yen"}),
}
BATCH_IDS = 100_000  # primary-key span per DELETE: bounds PostgreSQL's per-statement queues
_FK_RELAXED = "dunning_wipe_foreign_keys_off"  # connection info key: the cache size to restore
VACUUM_WORKERS = 2  # PostgreSQL tables vacuumed at the same time, one connection each
WIPE_CACHE_KIB = 262_144  # SQLite page cache of the wiping connection (grows only as needed)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


@dataclass(frozen=True)
class Scrub:
    """The personal columns of one campaign table whose rows survive the wipe."""

    table: Table
    columns: tuple[str, ...]


def _personal_columns(table: Table) -> tuple[str, ...]:
    extra = EXTRA_PERSONAL.get(table.name, frozenset())
    return tuple(
        column.name
        for column in table.columns
        if column.name in REFERENCE_COLUMNS
        or column.name.startswith(SEALED_PREFIX)
        or column.name in extra
    )


def scrub_plan() -> list[Scrub]:
    """Every campaign table (one with ``campaign_id``), except the deleted ones, that holds
    personal columns, with those columns."""
    deleted = {_table(model).name for model in DELETED_MODELS}
    plan = []
    for table in Base.metadata.sorted_tables:
        if table.name in deleted or "campaign_id" not in table.columns:
            continue
        columns = _personal_columns(table)
        if columns:
            plan.append(Scrub(table, columns))
    return plan


# --------------------------------------------------------------------------- rows


def _affected(result: Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _close_open_work(session: Session, campaign_id: int) -> dict[str, int]:
    """Cancel what a worker could still pick up; the rows lose their person next."""
    changes = (
        ("attempts_cancelled", Attempt, Attempt.status,
         (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED), AttemptStatus.CANCELLED),
        ("callbacks_cancelled", CallbackRequest, CallbackRequest.status,
         (CallbackStatus.PENDING, CallbackStatus.CLAIMED), CallbackStatus.CANCELLED),
        ("handoffs_closed", HandOff, HandOff.status,
         (HandOffStatus.OPEN, HandOffStatus.TAKEN), HandOffStatus.CLOSED),
    )  # fmt: skip
    counts = {}
    for key, model, status, open_values, closed in changes:
        statement = (
            update(model)
            .where(model.campaign_id == campaign_id, status.in_(open_values))
            .values({status: closed})
            .execution_options(synchronize_session=False)
        )
        counts[key] = _affected(session.execute(statement))
    return counts


def _scrub_columns(session: Session, campaign_id: int) -> dict[str, int]:
    counts = {}
    for scrub in scrub_plan():
        statement = (
            update(scrub.table)
            .where(scrub.table.c.campaign_id == campaign_id)
            .values(dict.fromkeys(scrub.columns))
        )
        counts[f"{scrub.table.name}_scrubbed"] = _affected(session.execute(statement))
    return counts


def _id_span(session: Session, table: Table, campaign_id: int) -> tuple[int, int] | None:
    low, high = session.execute(
        select(func.min(table.c.id), func.max(table.c.id)).where(table.c.campaign_id == campaign_id)
    ).one()
    return None if low is None else (int(low), int(high))


def _delete_rows(session: Session, table: Table, campaign_id: int) -> int:
    """Set-based DELETE in primary-key spans of :data:`BATCH_IDS`."""
    span = _id_span(session, table, campaign_id)
    if span is None:
        return 0
    deleted = 0
    for low in range(span[0], span[1] + 1, BATCH_IDS):
        statement = delete(table).where(
            table.c.campaign_id == campaign_id,
            table.c.id >= low,
            table.c.id < low + BATCH_IDS,
        )
        deleted += _affected(session.execute(statement))
    return deleted


def erase_rows(session: Session, campaign_id: int) -> dict[str, int]:
    """Close open work, null personal columns, delete the target rows (caller's transaction).
    Refuses (nothing erased) when another campaign's row points at this campaign's targets,
    whether or not :func:`relax_reference_checks` switched the per-row checks off."""
    counts = _close_open_work(session, campaign_id)
    counts |= _scrub_columns(session, campaign_id)
    assert_no_outside_references(session, campaign_id)
    for model in DELETED_MODELS:
        table = _table(model)
        counts[table.name] = _delete_rows(session, table, campaign_id)
    return counts


# --------------------------------------------------------------------------- references


def deleted_tables() -> set[str]:
    return {_table(model).name for model in DELETED_MODELS}


def referencing_columns() -> list[tuple[str, str, str]]:
    """(table, column, referred table) of every foreign key pointing at a deleted table."""
    deleted = deleted_tables()
    return [
        (table.name, key.parent.name, key.column.table.name)
        for table in Base.metadata.sorted_tables
        for key in table.foreign_keys
        if key.column.table.name in deleted
    ]


def references_handled() -> bool:
    """Whether the wipe itself deletes or nulls every column that can point at a deleted row."""
    deleted = deleted_tables()
    nulled = {(s.table.name, column) for s in scrub_plan() for column in s.columns}
    return all(t in deleted or (t, c) in nulled for t, c, _ in referencing_columns())


def assert_no_outside_references(session: Session, campaign_id: int) -> None:
    """After the scrub, before the deletes: no row outside the campaign's own target rows
    points at them (the wipe only nulls references inside the campaign)."""
    tables = Base.metadata.tables
    for name, column, referred in referencing_columns():
        child, parent = tables[name], tables[referred]
        targets = select(parent.c.id).where(parent.c.campaign_id == campaign_id)
        query = select(literal(1)).select_from(child).where(child.c[column].in_(targets))
        if name in deleted_tables():
            query = query.where(child.c.campaign_id != campaign_id)
        if session.execute(query.limit(1)).first() is not None:
            raise IntegrityViolation(
                f"{name}.{column} of another campaign points at campaign {campaign_id}; "
                "nothing was erased"
            )


def _restore_sqlite_connection(dbapi_connection: Any, record: Any) -> None:
    cache_size = record.info.pop(_FK_RELAXED, None)
    if cache_size is not None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size={int(cache_size)}")
        cursor.close()


def _may_set_replication_role(session: Session) -> bool:
    if session.scalar(text("SELECT current_setting('is_superuser')")) == "on":
        return True
    if int(session.scalar(text("SELECT current_setting('server_version_num')")) or 0) < 150000:
        return False
    query = text("SELECT has_parameter_privilege('session_replication_role', 'SET')")
    return bool(session.scalar(query))


def relax_reference_checks(session: Session) -> bool:
    """Switch per-row foreign-key checks off for this transaction when that is safe; must
    run before the transaction's first write (SQLite ignores the pragma inside one)."""
    if not references_handled():
        return False
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        engine = connection.engine
        if not event.contains(engine, "checkin", _restore_sqlite_connection):
            event.listen(engine, "checkin", _restore_sqlite_connection)
        previous = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
        connection.connection.info[_FK_RELAXED] = previous
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        # a page cache that holds the indexes being emptied, so pages are not spilled to the
        # WAL again and again inside the one big transaction
        connection.exec_driver_sql(f"PRAGMA cache_size=-{WIPE_CACHE_KIB}")
        return True
    if connection.dialect.name == "postgresql" and _may_set_replication_role(session):
        session.execute(text("SET LOCAL session_replication_role = replica"))
        return True
    return False


# --------------------------------------------------------------------------- storage


def compact_storage(database: Database, *, full: bool = False) -> dict[str, Any]:
    """Physically drop freed pages so erased values do not linger in the database files.

    PostgreSQL: ``VACUUM`` frees dead tuples but leaves their bytes in pages still in use
    (ciphertext under the destroyed key); ``full`` rewrites the tables instead (``VACUUM
    FULL``: an exclusive lock on each table while it is rewritten). Either way a transaction
    still open anywhere on the server may keep just-deleted rows alive: the count it kept is
    reported as ``dead_rows_kept`` (``None`` if the server's messages could not be read), and
    those rows are removed by a later (auto)vacuum; they hold only crypto-shredded values."""
    engine = database.engine
    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.exec_driver_sql("VACUUM")
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            return {"engine": "sqlite", "vacuumed": True, "wal_truncated": busy == 0}
    tables = sorted(deleted_tables() | {scrub.table.name for scrub in scrub_plan()})
    kept = _vacuum_postgres(engine, tables, full)
    if kept:
        log.warning("wipe: %d dead rows kept by an open transaction until a later vacuum", kept)
    return {
        "engine": engine.dialect.name,
        "vacuumed": True,
        "full": full,
        "tables": tables,
        "dead_rows_kept": kept,
    }


_KEPT_PATTERNS = (
    re.compile(r"(\d+) dead row versions cannot be removed yet"),
    re.compile(r"(\d+) are dead but not yet removable"),
)


def _vacuum_table(engine: Engine, table: str, full: bool) -> list[int]:
    """VACUUM (VERBOSE) one table on its own connection; the dead-row counts the server
    reported as not yet removable."""
    counts: list[int] = []

    def on_notice(diagnostic: Any) -> None:
        message = f"{diagnostic.message_primary or ''} {diagnostic.message_detail or ''}"
        for pattern in _KEPT_PATTERNS:
            counts.extend(int(found) for found in pattern.findall(message))

    command = "VACUUM (FULL, VERBOSE)" if full else "VACUUM (VERBOSE)"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        raw: Any = connection.connection.dbapi_connection
        raw.add_notice_handler(on_notice)
        try:
            connection.execute(text(f'{command} "{table}"'))
        finally:
            raw.remove_notice_handler(on_notice)
    return counts


def _vacuum_postgres(engine: Engine, tables: list[str], full: bool) -> int | None:
    """Vacuum the tables, :data:`VACUUM_WORKERS` at a time; the dead rows the server could not
    remove yet, read from its messages (``None`` when they do not say, e.g. in another
    language)."""
    with ThreadPoolExecutor(max_workers=VACUUM_WORKERS) as pool:
        reports = list(pool.map(lambda table: _vacuum_table(engine, table, full), tables))
    counts = [count for report in reports for count in report]
    return sum(counts) if counts else None


def checkpoint_wal(database: Database) -> None:
    """SQLite: fold the WAL back into the file and truncate it (no-op elsewhere)."""
    if database.engine.dialect.name != "sqlite":
        return
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
