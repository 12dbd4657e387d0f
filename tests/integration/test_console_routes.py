"""Every console route declares its roles, and every role (and no session) gets the right answer.

The route list is read from ``app.routes``, so a new route is checked without editing this file;
only the values for its path parameters may need adding to ``PATH_VALUES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from agent_console.accounts import add_user
from dialer.operator_work import ClaimGate, claim_next
from kernel import migrate
from kernel.calendar import CallingPolicy, CallingWindow
from kernel.db import Database
from kernel.models import Attempt, HandOff, Role
from tests.e2e.world import (
    ACCOUNTS,
    OPEN_NOW,
    PASSWORD,
    build_world,
    console_app,
    console_settings,
    signed_in,
)

PUBLIC = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/lang/{language}"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/login/totp"),
    ("POST", "/login/totp"),
}
SIGNED_IN_ANY_ROLE = {("POST", "/logout")}
ROLE_DENIED = "この画面を開く権限がありません"
QUERY = {"/supervisor/live": "?once=1"}  # the stream otherwise never ends


def declared_roles(route: APIRoute) -> frozenset[Role] | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        allowed = getattr(dependant.call, "allowed_roles", None)
        if allowed is not None:
            return frozenset(allowed)
        pending.extend(dependant.dependencies)
    return None


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """APIRoutes, also inside included routers (FastAPI >= 0.16x wraps them; the console
    includes its routers without an extra prefix, each router carries its own)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def console_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    for route in _api_routes(app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, route


def test_the_walk_finds_every_area(world: tuple[FastAPI, dict[str, Any]]) -> None:
    paths = {route.path for _, route in console_routes(world[0])}
    for area in ("/operator", "/staff", "/supervisor", "/admin", "/exports", "/login"):
        assert any(path.startswith(area) for path in paths), area


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("matrix")
    database = Database(f"sqlite:///{directory / 'matrix.sqlite3'}")
    migrate.upgrade(database)
    built = build_world(database, Path(directory), persons=12)
    operator_id = built.user_ids[ACCOUNTS[Role.OPERATOR]]
    with database.unit_of_work() as session:
        gate = ClaimGate(CallingWindow(CallingPolicy.default()), timedelta(hours=24))
        claim = claim_next(session, operator_id, gate, OPEN_NOW)
        assert claim is not None
        attempt = session.get(Attempt, claim.attempt_id)
        assert attempt is not None and attempt.person_id is not None
        handoff = HandOff(
            campaign_id=built.campaign_id, person_id=attempt.person_id, reason="installment"
        )
        session.add(handoff)
        add_user(session, "victim.user", "被験者", Role.OPERATOR, PASSWORD, "test")
        session.flush()
        values = {
            "attempt_id": claim.attempt_id,
            "person_id": attempt.person_id,
            "handoff_id": handoff.id,
            "campaign_id": built.campaign_id,
            "action": "pause",
            "username": "victim.user",
            "language": "en",
            "kind": "funnel",
            "fmt": "csv",
        }
    settings = console_settings(database.url, var_dir=directory / "var")
    yield console_app(database, settings=settings), values
    database.dispose()


def _url(route: APIRoute, values: dict[str, Any]) -> str:
    path = re.sub(r"{(\w+)}", lambda m: str(values[m.group(1)]), route.path)
    return path + QUERY.get(route.path, "")


def test_every_route_declares_roles(world: tuple[FastAPI, dict[str, Any]]) -> None:
    app, _ = world
    undeclared = [
        (method, route.path)
        for method, route in console_routes(app)
        if (method, route.path) not in PUBLIC | SIGNED_IN_ANY_ROLE and declared_roles(route) is None
    ]
    assert undeclared == []


def test_anonymous_is_sent_to_login_everywhere_but_public_pages(
    world: tuple[FastAPI, dict[str, Any]],
) -> None:
    app, values = world
    client = TestClient(app)
    for method, route in console_routes(app):
        if (method, route.path) in PUBLIC:
            continue
        response = client.request(method, _url(route, values), follow_redirects=False)
        if response.status_code == 303:
            assert response.headers["location"] == "/login", (method, route.path)
        else:
            assert response.status_code == 401, (method, route.path, response.status_code)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_its_routes(
    world: tuple[FastAPI, dict[str, Any]], role: Role
) -> None:
    app, values = world
    client, token = signed_in(app, ACCOUNTS[role])
    checked = 0
    for method, route in console_routes(app):
        roles = declared_roles(route)
        if roles is None:
            continue
        data = {"csrf_token": token} if method == "POST" else None
        response = client.request(method, _url(route, values), data=data, follow_redirects=False)
        where = (role.value, method, route.path, response.status_code)
        assert response.status_code < 500, where
        if role in roles:
            assert response.status_code != 401, where
            assert ROLE_DENIED not in response.text, where
            assert response.headers.get("location") != "/login", where
        else:
            assert response.status_code == 403, where
            assert ROLE_DENIED in response.text, where
        checked += 1
    assert checked >= 20
