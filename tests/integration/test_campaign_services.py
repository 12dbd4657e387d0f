"""Campaign services and the ``dunning campaign`` commands: life cycle, planning, audit."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dialer import campaigns
from kernel import audit
from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.errors import Conflict
from kernel.models import (
    Attempt,
    AttemptStatus,
    AuditEvent,
    CampaignStatus,
    Channel,
    PhoneKind,
    TargetStatus,
)
from sync.synthetic import write_export
from tests.fakes.dialer_world import Target, World, finish_call


@pytest.fixture
def world(database: Database) -> World:
    built = World(database)
    built.exclusion_list()
    return built


def status(world: World, campaign_id: int) -> CampaignStatus:
    with world.database.read_only() as session:
        return campaigns.get_campaign(session, campaign_id).status


def test_ready_plans_one_first_contact_per_active_target_inside_the_window(world: World) -> None:
    world.clock.set(world.clock.now().replace(hour=22))  # planned at night: opens tomorrow
    targets = [
        Target(),
        Target(numbers=[]),  # no phone -> letter
        Target(status=TargetStatus.HOLDOUT),  # control group: no contact
        Target(channel=Channel.OPERATOR),
    ]
    campaign_id = world.campaign(targets, running=False)

    assert status(world, campaign_id) is CampaignStatus.READY
    with world.database.read_only() as session:
        attempts = list(session.scalars(select(Attempt).order_by(Attempt.person_id)))
    assert [a.channel for a in attempts] == [Channel.IVR, Channel.LETTER, Channel.OPERATOR]
    tomorrow_nine = "2026-12-08T09:00:00+09:00"
    assert attempts[0].scheduled_at.astimezone(TOKYO).isoformat() == tomorrow_nine
    assert all(a.sequence_no == 1 and a.status is AttemptStatus.SCHEDULED for a in attempts)
    assert len({a.idempotency_key for a in attempts}) == 3


def test_readying_again_after_going_back_to_draft_does_not_double(world: World) -> None:
    campaign_id = world.campaign([Target(), Target()], running=False)
    with world.database.unit_of_work() as session:
        campaigns.move(session, campaign_id, CampaignStatus.DRAFT, "staff")
    with world.database.unit_of_work() as session:
        created = campaigns.prepare(session, campaign_id, world.window, world.clock.now(), "x")
    assert created == 0


def test_life_cycle_moves_only_along_the_transitions_and_is_audited(world: World) -> None:
    campaign_id = world.campaign([Target()], running=False)
    with world.database.unit_of_work() as session:
        with pytest.raises(Conflict):
            campaigns.command(session, campaign_id, "resume", "supervisor")
    for verb, expected in (
        ("start", CampaignStatus.RUNNING),
        ("pause", CampaignStatus.PAUSED),
        ("resume", CampaignStatus.RUNNING),
    ):
        with world.database.unit_of_work() as session:
            campaigns.command(session, campaign_id, verb, "supervisor")
        assert status(world, campaign_id) is expected
    with world.database.unit_of_work() as session:
        cancelled = campaigns.close(session, campaign_id, "supervisor")
    assert cancelled == 1 and status(world, campaign_id) is CampaignStatus.COMPLETED
    with world.database.unit_of_work() as session, pytest.raises(Conflict):
        campaigns.command(session, campaign_id, "start", "supervisor")
    with world.database.read_only() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert audit.verify_chain(session).ok
    assert actions == [
        "campaign.ready",
        "campaign.planned",
        "campaign.running",
        "campaign.paused",
        "campaign.running",
        "campaign.completed",
    ]


def test_a_running_campaign_with_nothing_left_completes(world: World) -> None:
    number = "+81300001234"
    campaign_id = world.campaign([Target(numbers=[(number, PhoneKind.FIXED_LINE)])])
    dispatcher = world.dispatcher()
    dispatcher.tick()
    with world.database.unit_of_work() as session:
        assert campaigns.complete_finished(session) == []  # a call is in flight
    attempt_id = world.fake.calls[0].request.attempt_id
    finish_call(world, attempt_id, outcome="rpc_confirmed")
    with world.database.unit_of_work() as session:
        assert campaigns.complete_finished(session) == []  # follow-up not planned yet
    dispatcher.tick()
    with world.database.unit_of_work() as session:
        assert campaigns.complete_finished(session) == [campaign_id]
    assert status(world, campaign_id) is CampaignStatus.COMPLETED


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from kernel.settings import get_settings

    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", world.database.url)
    monkeypatch.setenv("DUNNING_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_create_ready_start_pause_resume_close(cli_env: Path) -> None:
    from dunning.cli_campaign import campaign_app

    export = cli_env / "export.csv"
    write_export(export, persons=30, seed=3, as_of=date(2026, 11, 24))
    runner = CliRunner()

    created = runner.invoke(campaign_app, ["create", str(export), "--name", "12月催告", "--json"])
    assert created.exit_code == 0, created.output
    campaign_id = json.loads(created.stdout)["campaign_id"]

    ready = runner.invoke(campaign_app, ["ready", str(campaign_id), "--json"])
    assert ready.exit_code == 0, ready.output
    assert json.loads(ready.stdout)["attempts"] > 0
    for verb, expected in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        result = runner.invoke(campaign_app, [verb, str(campaign_id), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["status"] == expected

    listed = runner.invoke(campaign_app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == campaign_id]
    assert row["status"] == "running" and row["name"] == "12月催告" and row["targets"] > 0

    shown = runner.invoke(campaign_app, ["show", str(campaign_id)])
    assert shown.exit_code == 0 and "実行中" in shown.stdout and "自動音声" in shown.stdout

    closed = runner.invoke(campaign_app, ["close", str(campaign_id)])
    assert closed.exit_code == 0 and "完了" in closed.stdout

    wrong = runner.invoke(campaign_app, ["resume", str(campaign_id)])
    assert wrong.exit_code != 0


def test_cli_list_prints_a_japanese_table(cli_env: Path, world: World) -> None:
    from dunning.cli_campaign import campaign_app

    world.campaign([Target()])
    world.clock.advance(timedelta(minutes=1))
    result = CliRunner().invoke(campaign_app, ["list"])
    assert result.exit_code == 0
    assert "催告一覧" in result.stdout and "実行中" in result.stdout
