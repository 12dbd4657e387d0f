"""The SQLite engine hands out the connection used last (its page cache is the warm one)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from kernel.db import Database


def _driver_connection(database: Database) -> object:
    with database.read_only() as session:
        return session.connection().connection.driver_connection


def test_sqlite_sessions_take_the_connection_returned_last(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/lifo.db")
    try:
        with ExitStack() as first, ExitStack() as second:
            one = first.enter_context(database.read_only())
            two = second.enter_context(database.read_only())
            used_first = one.connection().connection.driver_connection
            used_second = two.connection().connection.driver_connection
            assert used_first is not used_second  # two connections in the pool now
            first.close()
            second.close()  # returned last
        assert _driver_connection(database) is used_second
        assert _driver_connection(database) is used_second
    finally:
        database.dispose()
