"""A small, realistic console world: a synthetic import in a running campaign, an exclusion
list, one account per role and an operator queue. Shared by the console's integration tests,
the browser tests and the load benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_console.accounts import add_user
from agent_console.app import create_console
from agent_console.context import ConsoleContext
from agent_console.security import COOKIE
from dialer.clock import SimulatedClock
from kernel.calendar import CallingWindow
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import Database
from kernel.models import (
    Attempt,
    Campaign,
    CampaignStatus,
    Channel,
    ExclusionList,
    Person,
    Phone,
    Role,
)
from kernel.pii import KeyRing
from kernel.settings import Settings, SyncSettings, load_settings
from sync.importer import import_file
from sync.synthetic import write_export

SECRET = "console-test-data-key-secret-0123456789abcdef"
KEYRING = KeyRing(SECRET)
# Wednesday 25 November 2026, 10:30 in Tokyo: inside the default calling window.
OPEN_NOW = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)
AS_OF = date(2026, 11, 24)
PASSWORD = "correct-horse-battery-42"
ACCOUNTS: dict[Role, str] = {
    Role.OPERATOR: "op.tanaka",
    Role.STAFF: "staff.sato",
    Role.SUPERVISOR: "sv.kato",
    Role.ADMIN: "admin.ito",
}


@dataclass
class World:
    database: Database
    campaign_id: int
    attempt_ids: list[int]
    user_ids: dict[str, int] = field(default_factory=dict)


def console_settings(database_url: str, **overrides: object) -> Settings:
    return load_settings(
        environment="demo",
        database_url=database_url,
        redis_url=None,
        data_key_secret=SECRET,
        **overrides,
    )


def build_world(
    database: Database,
    directory: Path,
    *,
    persons: int = 30,
    seed: int = 11,
    now: datetime = OPEN_NOW,
    extra_operators: int = 0,
) -> World:
    """Import a synthetic export, start the campaign and queue an operator call per phone."""
    export = directory / "arrears_export.csv"
    write_export(export, persons=persons, seed=seed, as_of=AS_OF)
    summary = import_file(
        database, KEYRING, SyncSettings(), export, as_of=AS_OF, campaign_name="テスト催告 11月"
    )
    assert summary.campaign_id is not None
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, summary.campaign_id)
        assert campaign is not None
        campaign.status = CampaignStatus.RUNNING
        session.add(ExclusionList(as_of=now - timedelta(hours=1), file_sha256="0" * 64))
        phoned = session.scalars(
            select(Person.id)
            .where(Person.campaign_id == campaign.id, Person.id.in_(select(Phone.person_id)))
            .order_by(Person.id)
        ).all()
        attempts = [
            Attempt(
                campaign_id=campaign.id,
                person_id=person_id,
                channel=Channel.OPERATOR,
                scheduled_at=now - timedelta(minutes=5),
                idempotency_key=f"operator-first:{person_id}",
            )
            for person_id in phoned
        ]
        session.add_all(attempts)
        session.flush()
        world = World(database, campaign.id, [a.id for a in attempts])
        for role, username in ACCOUNTS.items():
            user = add_user(session, username, f"{role.value}さん", role, PASSWORD, "test")
            world.user_ids[username] = user.id
        for number in range(extra_operators):
            name = f"op.load{number:03d}"
            user = add_user(session, name, f"負荷{number}", Role.OPERATOR, PASSWORD, "test")
            world.user_ids[name] = user.id
    return world


def console_app(
    database: Database,
    *,
    coordination: Coordination | None = None,
    now: datetime = OPEN_NOW,
    settings: Settings | None = None,
) -> FastAPI:
    chosen = settings or console_settings(database.url)
    ctx = ConsoleContext(
        settings=chosen,
        database=database,
        coordination=coordination or LocalCoordination(),
        keyring=KEYRING,
        calling_window=CallingWindow(chosen.calling_window.policy()),
        clock=SimulatedClock(now, speedup=1.0),
    )
    return create_console(ctx)


def signed_in(app: FastAPI, username: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A test client with a live session for ``username`` and its CSRF token."""
    client = TestClient(app)
    response = client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    session_id = client.cookies.get(COOKIE)
    assert session_id
    user = app.state.sessions.load(session_id)
    assert user is not None
    return client, user.csrf_token
