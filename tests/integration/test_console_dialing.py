"""Click-to-call through the carrier port when it can, manual dialing (number shown) when not."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI

from agent_console.app import create_console
from dialer.ports import CallHandle, CallRequest, Capabilities, SmsHandle, SmsRequest
from kernel import migrate
from kernel.db import Database
from kernel.models import Attempt, Role
from tests.e2e.world import ACCOUNTS, build_world, console_app, signed_in


class ClickToCallCarrier:
    """Speaks the Carrier protocol; records what it was asked to dial."""

    name = "clicktest"

    def __init__(self, click_to_call: bool) -> None:
        self.click_to_call = click_to_call
        self.placed: list[CallRequest] = []

    def capabilities(self) -> Capabilities:
        return Capabilities(True, False, self.click_to_call, False, False, 1.0)

    def place_call(self, request: CallRequest) -> CallHandle:
        self.placed.append(request)
        return CallHandle(True, self.name, f"ref-{len(self.placed)}")

    def hang_up(self, carrier_ref: str) -> None:
        return None

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        return SmsHandle(False, self.name, error_code="unsupported")

    def active_calls(self) -> list[str]:
        return []


def _app_with(database: Database, carrier: ClickToCallCarrier) -> FastAPI:
    ctx = console_app(database).state.ctx
    ctx.carrier = carrier
    return create_console(ctx)


def test_click_to_call_places_the_call_through_the_carrier(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'dial.sqlite3'}")
    migrate.upgrade(database)
    build_world(database, tmp_path, persons=6)
    carrier = ClickToCallCarrier(click_to_call=True)
    client, token = signed_in(_app_with(database, carrier), ACCOUNTS[Role.OPERATOR])
    screen = client.post("/operator/next", data={"csrf_token": token})
    phone_id = re.search(r'name="phone_id" value="(\d+)"', screen.text)
    assert phone_id is not None
    path = str(screen.url).removeprefix("http://testserver")
    dialed = client.post(f"{path}/dial", data={"csrf_token": token, "phone_id": phone_id.group(1)})
    assert dialed.status_code == 200
    assert len(carrier.placed) == 1 and carrier.placed[0].to_e164.startswith("+81")
    with database.read_only() as session:
        attempt = session.get(Attempt, int(path.rsplit("/", 1)[1]))
        assert attempt is not None and attempt.carrier_ref == "ref-1"


def test_without_click_to_call_the_number_is_shown_for_manual_dialing(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'manual.sqlite3'}")
    migrate.upgrade(database)
    build_world(database, tmp_path, persons=6)
    carrier = ClickToCallCarrier(click_to_call=False)
    client, token = signed_in(_app_with(database, carrier), ACCOUNTS[Role.OPERATOR])
    screen = client.post("/operator/next", data={"csrf_token": token})
    assert 'name="phone_id"' not in screen.text
    assert re.search(r'class="tel">0\d{1,4}-\d{1,4}-\d{3,4}<', screen.text)
    path = str(screen.url).removeprefix("http://testserver")
    refused = client.post(f"{path}/dial", data={"csrf_token": token, "phone_id": "1"})
    assert refused.status_code == 409 and carrier.placed == []
