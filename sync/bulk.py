"""Bulk inserts through the database driver, inside the caller's transaction.

SQLAlchemy's ORM and Core inserts prepare every parameter of every row in Python; for the
hundreds of thousands of rows of one import that costs more than the database's own work.
:class:`BulkInsert` hands rows as tuples to the driver: ``executemany`` on SQLite and
``COPY ... FROM STDIN`` on PostgreSQL (psycopg). Values still pass through each column
type's bind processor (dates, enums, booleans, time stamps), so they are stored exactly as
the ORM would store them, and columns the caller does not supply get their Python-side
defaults (``created_at``, ``status`` ...), evaluated once per call.

:func:`reserve_ids` hands out primary keys before the insert, so children (receivables,
phones) can reference their person without reading ids back.

SQLite evaluates a CHECK ``IN (...)`` constraint slowly (it costs more than the rest of the
insert). A caller that passes enum members, never free strings, in the enum columns can
say so (``enum_checks_in_python``): the enum types' bind processors accept only members,
so on SQLite the insert runs with ``PRAGMA ignore_check_constraints`` (switched back off
right after), provided that the table has no CHECK constraints other than its enum and
boolean types'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import CheckConstraint, Connection, LargeBinary, Table, text
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.schema import ColumnDefault

Processor = Callable[[Any], Any]


class BulkInsert:
    """Inserts rows of ``table``: each row a tuple of ``columns``, in that order."""

    def __init__(
        self,
        connection: Connection,
        table: Table,
        columns: Sequence[str],
        *,
        enum_checks_in_python: bool = False,
    ) -> None:
        self.connection, self.table = connection, table
        dialect: Dialect = connection.dialect
        self.supplied = tuple(columns)
        self.defaults: list[tuple[str, ColumnDefault]] = [
            (column.name, column.default)
            for column in table.columns
            if column.name not in self.supplied
            and isinstance(column.default, ColumnDefault)
            and not column.primary_key
        ]
        self.columns = (*self.supplied, *(name for name, _ in self.defaults))
        processors = [
            table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.columns
        ]
        self.processed = [(i, p) for i, p in enumerate(processors) if p is not None]
        self.postgres = dialect.name == "postgresql"
        self.skip_checks = enum_checks_in_python and not self.postgres and _only_type_checks(table)

    def _default_values(self) -> tuple[Any, ...]:
        values = []
        for _, default in self.defaults:
            if default.is_callable:
                values.append(default.arg(None))
            else:
                values.append(default.arg)
        return tuple(values)

    def _prepared(self, rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
        """Rows with their defaults, every value through its column's bind processor (once
        per distinct value: enums, flags and dates repeat)."""
        extra = self._default_values()
        prepared = []
        processed: list[tuple[int, Processor, dict[Any, Any]]] = [
            (index, process, {}) for index, process in self.processed
        ]
        for row in rows:
            values = [*row, *extra]
            for index, process, seen in processed:
                value = values[index]
                try:
                    values[index] = seen[value]
                except KeyError:
                    values[index] = seen[value] = process(value)
            prepared.append(values)
        return prepared

    def insert(self, rows: Iterable[tuple[Any, ...]]) -> int:
        prepared = self._prepared(rows)
        if not prepared:
            return 0
        self._write(prepared)
        return len(prepared)

    def insert_columns(self, columns: Sequence[Sequence[Any]]) -> int:
        """:meth:`insert` of rows given column by column (``columns`` in the order of the
        constructor's, all of one length): each column goes through its bind processor as a
        whole, once per distinct value; binary columns (sealed values, which never repeat)
        go to sqlite3 as they are, bytes."""
        count = len(columns[0]) if columns else 0
        if count == 0:
            return 0
        processors = dict(self.processed)
        values: list[Iterable[Any]] = []
        for index, column in enumerate(columns):
            process = processors.get(index)
            values.append(column if process is None else self._processed(index, process, column))
        for index, value in enumerate(self._default_values(), start=len(columns)):
            process = processors.get(index)
            values.append(repeat(value if process is None else process(value), count))
        self._write(zip(*values, strict=False))
        return count

    def _processed(self, index: int, process: Processor, column: Sequence[Any]) -> Sequence[Any]:
        if isinstance(self.table.columns[self.columns[index]].type, LargeBinary):
            if not self.postgres:
                return column  # sqlite3 binds bytes as it binds sqlite3.Binary (a memoryview)
            return [process(value) for value in column]
        seen = {value: process(value) for value in set(column)}
        return list(map(seen.__getitem__, column))

    def _write(self, rows: Iterable[Sequence[Any]]) -> None:
        driver = self.connection.connection.driver_connection
        names = ", ".join(self.columns)
        if self.postgres:
            with driver.cursor() as cursor:  # type: ignore[union-attr]
                sql = f"COPY {self.table.name} ({names}) FROM STDIN"
                with cursor.copy(sql) as copy:
                    for values in rows:
                        copy.write_row(values)
        else:
            marks = ", ".join("?" * len(self.columns))
            sql = f"INSERT INTO {self.table.name} ({names}) VALUES ({marks})"
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                if self.skip_checks:
                    cursor.execute("PRAGMA ignore_check_constraints=ON")
                cursor.executemany(sql, rows)
            finally:
                if self.skip_checks:
                    cursor.execute("PRAGMA ignore_check_constraints=OFF")
                cursor.close()


def _only_type_checks(table: Table) -> bool:
    """Are all of the table's CHECK constraints those of its enum (and boolean) columns,
    which the columns' bind processors enforce already (an unknown member raises)?"""
    return all(
        getattr(constraint, "_type_bound", False)
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    )


def reserve_ids(connection: Connection, table: Table, count: int) -> list[int]:
    """``count`` fresh primary keys of ``table`` for rows inserted in this transaction.

    PostgreSQL draws them from the column's sequence; SQLite continues after the largest id,
    which is safe because the transaction already holds SQLite's only write lock (the
    caller has written before: the campaign and the import batch)."""
    if count == 0:
        return []
    name = table.name
    if connection.dialect.name == "postgresql":
        query = text(
            f"SELECT nextval(pg_get_serial_sequence('{name}', 'id')) "
            "FROM generate_series(1, :count)"
        )
        return [int(value) for value in connection.execute(query, {"count": count}).scalars()]
    largest = connection.execute(text(f"SELECT coalesce(max(id), 0) FROM {name}")).scalar_one()
    return list(range(int(largest) + 1, int(largest) + 1 + count))
