"""``dunning campaign create/ready --holdout``: the 保留群 is drawn before planning, never
contacted, and a stray attempt for a holdout target is refused by the dispatcher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from dialer.holdout import draw_holdout
from dunning.cli_campaign import campaign_app
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    AuditEvent,
    Campaign,
    Person,
    TargetStatus,
)
from kernel.settings import get_settings
from sync.synthetic import write_export
from tests.fakes.dialer_world import Target, World

runner = CliRunner()


@pytest.fixture
def export(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", database.url)
    monkeypatch.setenv("DUNNING_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    path = tmp_path / "export.csv"
    write_export(path, persons=40, seed=8, as_of=date(2026, 11, 24))
    yield path
    get_settings.cache_clear()


def _create(path: Path, *options: str) -> int:
    created = runner.invoke(campaign_app, ["create", str(path), "--json", *options])
    assert created.exit_code == 0, created.output
    return int(json.loads(created.stdout)["campaign_id"])


def _statuses(database: Database, campaign_id: int) -> dict[int, TargetStatus]:
    with database.read_only() as session:
        rows = session.execute(
            select(Person.id, Person.status).where(Person.campaign_id == campaign_id)
        )
        return {int(i): s for i, s in rows}


def _attempted(database: Database, campaign_id: int) -> set[int]:
    with database.read_only() as session:
        query = select(Attempt.person_id).where(Attempt.campaign_id == campaign_id)
        return {int(p) for p in session.scalars(query) if p is not None}


def test_ready_with_holdout_sets_aside_a_seeded_share_that_gets_no_attempt(
    database: Database, export: Path
) -> None:
    campaign_id = _create(export)
    active = [p for p, s in _statuses(database, campaign_id).items() if s is TargetStatus.ACTIVE]

    args = ["ready", str(campaign_id), "--holdout", "0.25", "--holdout-seed", "7", "--json"]
    ready = runner.invoke(campaign_app, args)

    assert ready.exit_code == 0, ready.output
    answer = json.loads(ready.stdout)
    held = {p for p, s in _statuses(database, campaign_id).items() if s is TargetStatus.HOLDOUT}
    assert answer["holdout"] == len(held) == round(0.25 * len(active)) > 0
    assert answer["attempts"] > 0
    assert held.isdisjoint(_attempted(database, campaign_id))
    with database.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        assert (campaign.holdout_share, campaign.holdout_seed) == (0.25, 7)
        assert campaign.holdout_assigned_at is not None
        events = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "campaign.holdout_assigned")
        )
        assert events == 1


def test_the_recorded_seed_reproduces_the_draw(database: Database, export: Path) -> None:
    campaign_id = _create(export)
    before = _statuses(database, campaign_id)
    active = [p for p, s in before.items() if s is TargetStatus.ACTIVE]

    args = ["ready", str(campaign_id), "--holdout", "0.2", "--holdout-seed", "3"]
    assert runner.invoke(campaign_app, args).exit_code == 0

    held = [p for p, s in _statuses(database, campaign_id).items() if s is TargetStatus.HOLDOUT]
    assert sorted(held) == draw_holdout(active, 0.2, 3)


def test_a_share_given_at_create_is_drawn_when_readied(database: Database, export: Path) -> None:
    campaign_id = _create(export, "--holdout", "0.1")

    ready = runner.invoke(campaign_app, ["ready", str(campaign_id), "--json"])

    assert ready.exit_code == 0, ready.output
    held = {p for p, s in _statuses(database, campaign_id).items() if s is TargetStatus.HOLDOUT}
    assert json.loads(ready.stdout)["holdout"] == len(held) > 0
    assert held.isdisjoint(_attempted(database, campaign_id))


@pytest.mark.parametrize("share", ["0.5", "0.9", "-0.1"])
def test_a_share_outside_the_range_is_refused_and_changes_nothing(
    database: Database, export: Path, share: str
) -> None:
    campaign_id = _create(export)

    result = runner.invoke(campaign_app, ["ready", str(campaign_id), "--holdout", share])

    assert result.exit_code != 0
    assert _attempted(database, campaign_id) == set()
    assert TargetStatus.HOLDOUT not in _statuses(database, campaign_id).values()


def test_no_holdout_option_means_no_holdout(database: Database, export: Path) -> None:
    campaign_id = _create(export)

    ready = runner.invoke(campaign_app, ["ready", str(campaign_id), "--json"])

    assert ready.exit_code == 0 and json.loads(ready.stdout)["holdout"] == 0
    assert TargetStatus.HOLDOUT not in _statuses(database, campaign_id).values()


def test_an_attempt_for_a_holdout_target_is_refused_by_the_dispatcher(database: Database) -> None:
    world = World(database)
    world.exclusion_list()
    world.campaign([Target()])
    with database.unit_of_work() as session:
        person = session.scalars(select(Person)).one()
        person.status = TargetStatus.HOLDOUT  # e.g. an attempt planned by mistake

    report = world.dispatcher().tick()

    assert world.fake.calls == [] and report.placed == 0
    with database.read_only() as session:
        (attempt,) = session.scalars(select(Attempt)).all()
        assert attempt.status is AttemptStatus.REFUSED
        assert attempt.refusal_reason == "target_stopped"
