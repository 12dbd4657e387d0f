"""Engine, sessions and the unit of work (one transaction per use case)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_MS = 30_000  # SQLite: how long a statement waits for a lock another connection holds


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA foreign_keys=ON",
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA secure_delete=ON",
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(pragma)
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for SQLite (file directories created, safe pragmas) or PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # LIFO: each connection keeps its own page cache, which a commit through another
        # connection invalidates; handing out the connection used last keeps it warm (the
        # call session's batches read their attempts ~5-8% cheaper in bench/ivr_webhook.py).
        engine = create_engine(url, echo=echo, pool_use_lifo=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, future=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def lock_waits(session: Session, *, wait: bool) -> Iterator[None]:
    """With ``wait=False`` on SQLite, a statement in the block that needs the write lock while
    another connection holds it fails at once (``database is locked``) instead of sleeping in
    SQLite's busy handler for up to :data:`BUSY_TIMEOUT_MS`: for work on an event loop, which
    must hand such work to a thread rather than wait. The timeout is restored on the way out,
    before the unit of work commits (in WAL mode the commit takes no new lock). On other
    databases, and with ``wait=True``, nothing changes."""
    if wait or session.get_bind().dialect.name != "sqlite":
        yield
        return
    driver = session.connection().connection.driver_connection  # sqlite3: no SQLAlchemy layers
    assert driver is not None
    driver.execute("PRAGMA busy_timeout=0")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class Database:
    """Owns the engine and hands out units of work."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session whose work is committed together at the end, or rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
