"""Shared test fixtures.

Tests that need PostgreSQL or Redis use the ``postgres_url`` / ``redis_url`` fixtures.
Outside CI they skip with a visible reason when the server is not reachable; when the
environment variable ``CI`` is set they fail instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kernel.db import Database

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (6379 if parts.scheme.startswith("redis") else 5432)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require_service(name: str, env_var: str, default: str) -> str:
    url = os.environ.get(env_var, default)
    if _reachable(url):
        return url
    message = f"{name} is not reachable at {url} (set {env_var})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the {name} tests, not skip them")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _require_service("PostgreSQL", "DUNNING_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _require_service("Redis", "DUNNING_TEST_REDIS_URL", DEFAULT_REDIS_URL)


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session; dropped at the end."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"dunning_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fresh_schema(url: str) -> Database:
    from kernel import migrate
    from kernel.models import Base

    database = Database(url)
    with database.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    migrate.upgrade(database)
    return database


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite database in a temp file, for what only SQLite does."""
    database = _fresh_schema(f"sqlite:///{tmp_path / 'sqlite-only.sqlite3'}")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite in a temp file, and PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database")
    db = _fresh_schema(url)
    try:
        yield db
    finally:
        db.dispose()
