"""The ``report`` commands, ``letters`` and ``sync payments`` from the command line (SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from openpyxl import load_workbook
from typer.testing import CliRunner

from dunning.cli_report import letters_command, report_app
from dunning.cli_sync import sync_app
from kernel import migrate
from kernel.db import Database
from kernel.settings import get_settings
from tests.integration.test_reports_support import KEYRING, load_campaign, simulate_contacts

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", url)
    monkeypatch.setenv("DUNNING_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DUNNING_DATA_KEY_SECRET", KEYRING.master_secret)
    get_settings.cache_clear()
    database = Database(url)
    migrate.upgrade(database)
    yield database
    database.dispose()
    get_settings.cache_clear()


def test_report_formats_from_the_cli(cli_env: Database, tmp_path: Path) -> None:
    loaded = load_campaign(cli_env, tmp_path, persons=30)
    simulate_contacts(cli_env, loaded.campaign_id, [])
    shown = runner.invoke(report_app, ["daily", "--date", "2026-11-02", "--format", "table"])
    assert shown.exit_code == 0, shown.output
    assert "日報 2026年11月02日" in shown.output and "本人接触" in shown.output
    as_json = runner.invoke(report_app, ["monthly", "--month", "2026-11", "--format", "json"])
    data = json.loads(as_json.stdout)
    assert data["total"]["attempts"] == data["total"]["targets"] > 0
    out = tmp_path / "m.xlsx"
    options = ["--format", "xlsx", "--campaign", str(loaded.campaign_id), "--out", str(out)]
    written = runner.invoke(report_app, ["monthly", "--month", "2026-11", *options])
    assert written.exit_code == 0, written.output
    assert load_workbook(out)["概要 (催告別)"]["B5"].value == data["total"]["attempts"]
    csv_run = runner.invoke(report_app, ["daily", "--date", "2026-11-02", "--format", "csv"])
    assert csv_run.exit_code == 0
    assert (tmp_path / "var" / "reports" / "daily_20261102.csv").read_bytes().decode("cp932")
    bad = runner.invoke(report_app, ["monthly", "--month", "2026/11"])
    assert bad.exit_code != 0


def test_letters_and_payments_commands(cli_env: Database, tmp_path: Path) -> None:
    loaded = load_campaign(cli_env, tmp_path, persons=30, seed=9)
    app = typer.Typer()
    app.command("letters")(letters_command)
    app.command("noop")(lambda: None)
    printed = runner.invoke(app, ["letters", str(loaded.campaign_id)])
    assert printed.exit_code == 0, printed.output
    assert "催告書" in printed.output and "SHA-256" in printed.output
    paid = tmp_path / "paid.csv"
    paid.write_text(f"宛名番号,納付額,納付日\n{loaded.atena_numbers[0]},1000,2026-11-20\n",
                    encoding="utf-8")  # fmt: skip
    result = runner.invoke(sync_app, ["payments", str(paid), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_read"] == 1
