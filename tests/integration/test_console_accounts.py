"""Demo accounts and the language switch."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from agent_console.accounts import DEMO_ACCOUNTS, ensure_demo_accounts
from kernel import migrate
from kernel.db import Database
from kernel.models import Role
from tests.e2e.world import console_app, signed_in


def test_demo_accounts_cover_every_role_and_their_passwords_work(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    migrate.upgrade(database)
    with database.unit_of_work() as session:
        first = ensure_demo_accounts(session)
    with database.unit_of_work() as session:
        second = ensure_demo_accounts(session)  # re-running issues fresh passwords
    assert {role for _, _, role in first} == set(Role)
    assert [name for name, _, _ in first] == [name for name, _, _ in DEMO_ACCOUNTS]
    assert all(a[1] != b[1] for a, b in zip(first, second, strict=True))
    app = console_app(database)
    for username, password, role in second:
        client, _ = signed_in(app, username, password)
        assert (
            client.get(f"/{'operator' if role is Role.OPERATOR else role.value}").status_code == 200
        )
    stale = TestClient(app).post("/login", data={"username": first[0][0], "password": first[0][1]})
    assert stale.status_code == 401


def test_english_is_selectable_and_japanese_is_the_default(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'lang.sqlite3'}")
    migrate.upgrade(database)
    client = TestClient(console_app(database))
    assert "ログイン" in client.get("/login").text
    switched = client.get("/lang/en", headers={"referer": "http://testserver/login"})
    assert switched.status_code == 200 and "Sign in" in switched.text
