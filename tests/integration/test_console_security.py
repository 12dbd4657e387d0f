"""R-10 in the console: CSRF, lockout, idle expiry, cookies, escaping, audited views/exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from dialer.operator_work import cipher_for
from kernel import migrate
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    AuditEvent,
    Campaign,
    HandOff,
    Person,
    Role,
    User,
)
from tests.e2e.world import (
    ACCOUNTS,
    KEYRING,
    PASSWORD,
    World,
    build_world,
    console_app,
    console_settings,
    signed_in,
)

HOSTILE_NAME = '<script>alert("x")</script>山田'
HOSTILE_NOTE = "<img src=x onerror=alert(1)>メモ"


class FakeClock:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[World, Database]]:
    database = Database(f"sqlite:///{tmp_path / 'security.sqlite3'}")
    migrate.upgrade(database)
    yield build_world(database, tmp_path, persons=8), database
    database.dispose()


def _claimed(database: Database) -> int:
    with database.read_only() as session:
        return len(
            session.scalars(select(Attempt).where(Attempt.status == AttemptStatus.CLAIMED)).all()
        )


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_forms_without_the_right_csrf_token_are_refused_without_side_effects(
    setup: tuple[World, Database], token: str | None
) -> None:
    _, database = setup
    app = console_app(database)
    client, _ = signed_in(app, ACCOUNTS[Role.OPERATOR])
    data = {} if token is None else {"csrf_token": token}
    response = client.post("/operator/next", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert _claimed(database) == 0
    admin, _ = signed_in(app, ACCOUNTS[Role.ADMIN])
    data |= {"username": "new.user", "display_name": "新人", "role": "operator"}
    assert admin.post("/admin/users", data=data).status_code == 403
    header = admin.post(
        "/admin/users", data=data, headers={"X-CSRF-Token": "forged"}, follow_redirects=False
    )
    assert header.status_code == 403
    with database.read_only() as session:
        assert session.scalars(select(User).where(User.username == "new.user")).first() is None


def test_a_token_from_another_session_does_not_work(setup: tuple[World, Database]) -> None:
    _, database = setup
    app = console_app(database)
    client, _ = signed_in(app, ACCOUNTS[Role.OPERATOR])
    _, other_token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    response = client.post("/operator/next", data={"csrf_token": other_token})
    assert response.status_code == 403 and _claimed(database) == 0


def test_repeated_failures_lock_the_account(setup: tuple[World, Database]) -> None:
    _, database = setup
    settings = console_settings(database.url, console={"lockout_threshold": 3})
    client = TestClient(console_app(database, settings=settings))
    username = ACCOUNTS[Role.STAFF]
    for _ in range(3):
        wrong = client.post("/login", data={"username": username, "password": "not-it-at-all"})
        assert wrong.status_code == 401
    right = client.post("/login", data={"username": username, "password": PASSWORD})
    assert right.status_code == 401 and "locked" in right.text
    with database.read_only() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "user.locked" in actions


def test_an_idle_session_expires_and_activity_keeps_it_alive(
    setup: tuple[World, Database],
) -> None:
    _, database = setup
    clock = FakeClock()
    app = console_app(database, coordination=LocalCoordination(clock=clock))
    client, _ = signed_in(app, ACCOUNTS[Role.SUPERVISOR])
    idle = app.state.ctx.settings.console.idle_timeout_minutes * 60
    for _ in range(3):
        clock.value += idle - 30
        assert client.get("/supervisor", follow_redirects=False).status_code == 200
    clock.value += idle + 1
    expired = client.get("/supervisor", follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"] == "/login"


def test_session_cookie_is_httponly_samesite_and_secure_behind_https(
    setup: tuple[World, Database],
) -> None:
    _, database = setup
    settings = console_settings(database.url, public_base_url="https://dunning.example.jp")
    client = TestClient(console_app(database, settings=settings), base_url="https://testserver")
    response = client.post(
        "/login",
        data={"username": ACCOUNTS[Role.STAFF], "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie


def _make_hostile(database: Database) -> int:
    """Give the first queued target a hostile name and a hand-off with hostile notes."""
    with database.unit_of_work() as session:
        attempt = session.scalars(select(Attempt).order_by(Attempt.id)).first()
        assert attempt is not None and attempt.person_id is not None
        person = session.get(Person, attempt.person_id)
        campaign = session.get(Campaign, attempt.campaign_id)
        assert person is not None and campaign is not None
        cipher = cipher_for(KEYRING, campaign)
        record = cipher.open_record(person.sealed_pii, "pii")
        record |= {"name": HOSTILE_NAME, "name_kana": "<b>ヤマダ</b>", "address": "<i>町</i>"}
        person.sealed_pii = cipher.seal_record(record, "pii")
        session.add(
            HandOff(
                campaign_id=campaign.id,
                person_id=person.id,
                attempt_id=attempt.id,
                reason="<script>x</script>",
                sealed_notes=cipher.seal_text(HOSTILE_NOTE, "handoff_notes"),
            )
        )
        return person.id


def _assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "<b>ヤマダ</b>" not in html and "<i>町</i>" not in html


def test_names_and_notes_with_markup_render_escaped_everywhere(
    setup: tuple[World, Database],
) -> None:
    _, database = setup
    person_id = _make_hostile(database)
    app = console_app(database)
    operator, token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    screen = operator.post("/operator/next", data={"csrf_token": token})
    assert screen.status_code == 200 and "&lt;script&gt;alert(" in screen.text
    _assert_escaped(screen.text)
    attempt_path = re.search(r"/operator/calls/\d+", str(screen.url))
    assert attempt_path is not None
    operator.post(
        f"{attempt_path.group(0)}/identity", data={"csrf_token": token, "confirmed": "yes"}
    )
    saved = operator.post(
        f"{attempt_path.group(0)}/save",
        data={"csrf_token": token, "result_code": "rpc_other", "notes": HOSTILE_NOTE},
    )
    assert saved.status_code == 200
    staff, _ = signed_in(app, ACCOUNTS[Role.STAFF])
    for path in ("/staff", "/staff/handoffs/1", f"/targets/{person_id}/timeline"):
        page = staff.get(path)
        assert page.status_code == 200, path
        _assert_escaped(page.text)
    assert "&lt;img src=x onerror=alert(1)&gt;メモ" in staff.get("/staff/handoffs/1").text


def test_pages_with_personal_data_are_audited_with_who_which_target_and_page(
    setup: tuple[World, Database],
) -> None:
    world, database = setup
    app = console_app(database)
    operator, token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    operator.post("/operator/next", data={"csrf_token": token})
    staff, _ = signed_in(app, ACCOUNTS[Role.STAFF])
    with database.read_only() as session:
        person_id = session.scalars(
            select(Attempt.person_id).where(Attempt.status == AttemptStatus.CLAIMED)
        ).one()
    staff.get(f"/targets/{person_id}/timeline")
    with database.read_only() as session:
        views = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "person.viewed").order_by(AuditEvent.id)
        ).all()
    seen = [(e.actor, e.object_id, e.detail["page"]) for e in views]
    assert seen == [
        (f"user:{world.user_ids[ACCOUNTS[Role.OPERATOR]]}", str(person_id), "call_screen"),
        (f"user:{world.user_ids[ACCOUNTS[Role.STAFF]]}", str(person_id), "timeline"),
    ]


def test_results_export_is_for_staff_and_supervisors_and_is_audited(
    setup: tuple[World, Database],
) -> None:
    world, database = setup
    app: FastAPI = console_app(database)
    operator, operator_token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    path = f"/exports/{world.campaign_id}"
    assert operator.post(path, data={"csrf_token": operator_token}).status_code == 403
    staff, token = signed_in(app, ACCOUNTS[Role.STAFF])
    response = staff.post(path, data={"csrf_token": token})
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "宛名番号" in response.content.decode("cp932")
    with database.read_only() as session:
        exported = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "results.exported")
        ).all()
    assert [event.actor for event in exported] == [f"user:{world.user_ids[ACCOUNTS[Role.STAFF]]}"]


def test_admin_verifies_the_audit_chain_in_the_console(setup: tuple[World, Database]) -> None:
    _, database = setup
    admin, _ = signed_in(console_app(database), ACCOUNTS[Role.ADMIN])
    page = admin.get("/admin/audit?verify=1")
    assert page.status_code == 200 and 'id="chain-ok"' in page.text
    with database.unit_of_work() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id).limit(1)).one()
        event.action = "tampered"
    broken = admin.get("/admin/audit?verify=1")
    assert 'id="chain-bad"' in broken.text


def test_admin_adds_resets_and_disables_accounts(setup: tuple[World, Database]) -> None:
    _, database = setup
    app = console_app(database)
    admin, token = signed_in(app, ACCOUNTS[Role.ADMIN])
    added = admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "op.new",
            "display_name": "新人",
            "role": "operator",
        },
    )
    found = re.search(r'id="new-password">([^<]+)<', added.text)
    assert added.status_code == 200 and found is not None
    newcomer, _ = signed_in(app, "op.new", found.group(1))
    assert newcomer.get("/operator").status_code == 200
    admin.post("/admin/users/op.new/disable", data={"csrf_token": token})
    refused = TestClient(app).post(
        "/login", data={"username": "op.new", "password": found.group(1)}
    )
    assert refused.status_code == 401


def test_idle_timeout_setting_is_what_the_store_uses(setup: tuple[World, Database]) -> None:
    _, database = setup
    app = console_app(database)
    expected = timedelta(minutes=app.state.ctx.settings.console.idle_timeout_minutes)
    assert app.state.sessions.idle_seconds == expected.total_seconds()


def test_a_refused_form_comes_back_with_what_was_typed_escaped(
    setup: tuple[World, Database],
) -> None:
    _, database = setup
    app = console_app(database)
    operator, token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    screen = operator.post("/operator/next", data={"csrf_token": token})
    path = str(screen.url).removeprefix("http://testserver")
    typed = {"csrf_token": token, "result_code": "promise", "promise_amount": "3000"}
    refused = operator.post(f"{path}/save", data=typed | {"notes": HOSTILE_NOTE})
    assert refused.status_code == 422 and 'id="form-error"' in refused.text
    assert "約束日" in refused.text and 'value="3000"' in refused.text
    assert "&lt;img src=x onerror=alert(1)&gt;メモ</textarea>" in refused.text
    _assert_escaped(refused.text)
    assert _claimed(database) == 1  # still held, nothing logged
