"""The supervisor's live figures: server-sent events, operator states and campaign controls."""

from __future__ import annotations

import json
from pathlib import Path

from dialer import live
from kernel import migrate
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import Campaign, CampaignStatus, Role
from tests.e2e.world import ACCOUNTS, build_world, console_app, signed_in


def _snapshot(stream_text: str) -> dict[str, object]:
    event, data = stream_text.strip().split("\n", 1)
    assert event == "event: snapshot"
    loaded = json.loads(data.removeprefix("data: "))
    assert isinstance(loaded, dict)
    return loaded


def test_dashboard_stream_controls_and_operator_states(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'live.sqlite3'}")
    migrate.upgrade(database)
    world = build_world(database, tmp_path, persons=8)
    coordination = LocalCoordination()
    app = console_app(database, coordination=coordination)
    supervisor, token = signed_in(app, ACCOUNTS[Role.SUPERVISOR])
    operator, operator_token = signed_in(app, ACCOUNTS[Role.OPERATOR])
    operator.post("/operator/next", data={"csrf_token": operator_token})

    stream = supervisor.get("/supervisor/live?once=1")
    assert stream.headers["content-type"].startswith("text/event-stream")
    figures = _snapshot(stream.text)
    states = {o["name"]: o["state"] for o in figures["operators"]}  # type: ignore[attr-defined]
    assert states == {"operatorさん": "on_call"}
    assert figures["in_flight"] == {"ivr": 0, "operator": 1, "sms": 0}
    assert "山" not in stream.text  # no personal data, only figures and staff names

    paused = supervisor.post(
        f"/supervisor/campaigns/{world.campaign_id}/pause", data={"csrf_token": token}
    )
    assert paused.status_code == 200
    with database.read_only() as session:
        campaign = session.get(Campaign, world.campaign_id)
        assert campaign is not None and campaign.status is CampaignStatus.PAUSED
    refused = supervisor.post(
        f"/supervisor/campaigns/{world.campaign_id}/start", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    supervisor.post(f"/supervisor/campaigns/{world.campaign_id}/resume", data={"csrf_token": token})
    figures = _snapshot(supervisor.get("/supervisor/live?once=1").text)
    assert figures["campaigns"][0]["status"] == "running"  # type: ignore[index]


def test_changes_are_announced_to_listening_dashboards() -> None:
    coordination = LocalCoordination()
    subscription = coordination.subscribe(live.LIVE_CHANNEL)
    live.set_operator_state(coordination, 7, "wrap_up")
    assert subscription.get(1.0) == {"kind": "operator_state"}
    assert [s.state for s in live.operator_states(coordination, [(7, "A"), (8, "B")])] == [
        "wrap_up",
        "offline",
    ]
