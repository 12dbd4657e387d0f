"""``dunning demo`` end to end on a small synthetic campaign (the README's first command)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from dunning.demo import DemoOptions, demo_settings, run_demo
from kernel.db import Database
from kernel.models import Campaign, CampaignStatus, DailyAggregate, ErasureCertificate, Person


@pytest.mark.e2e
def test_the_demo_runs_the_whole_campaign_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = DemoOptions(targets=80, seed=3, var_dir=tmp_path / "var", serve=False)
    run_demo(options)
    printed = capsys.readouterr().out

    for stage in ("取込", "架電", "通話記録", "催告書", "結果返却", "日報", "消去", "監査ログ"):
        assert stage in printed
    database = Database(demo_settings(options).database_url)
    try:
        with database.read_only() as session:
            campaign, live = session.scalars(select(Campaign).order_by(Campaign.id)).all()
            persons = session.scalar(
                select(func.count()).select_from(Person).where(Person.campaign_id == campaign.id)
            )
            live_persons = session.scalar(
                select(func.count()).select_from(Person).where(Person.campaign_id == live.id)
            )
            certificates = session.scalar(select(func.count()).select_from(ErasureCertificate))
            counters = session.scalar(select(func.count()).select_from(DailyAggregate))
    finally:
        database.dispose()
    assert campaign.status is CampaignStatus.WIPED and campaign.wrapped_data_key is None
    assert persons == 0 and certificates == 1 and counters
    assert live.status is CampaignStatus.RUNNING and live_persons  # for the console
    var = options.var_dir
    assert list((var / "reports").glob("daily_*.pdf")) and list((var / "reports").glob("*.xlsx"))
    assert not list((var / "letters" / f"campaign-{campaign.id}").rglob("*.pdf")), "wiped"
    assert list((var / "letters" / f"campaign-{live.id}").glob("*.pdf"))  # the live campaign
    assert not list((var / "exports").glob("results_*")), "the results file is wiped too"
    assert not list((var / "demo").glob("arrears_export*"))
    assert not list((var / "demo").glob("live_export*"))
