"""The configured sources (``sync.sources``), as the nightly job and ``dunning sync run``
import them: every source in its own campaign, a failing source reported, the rest run."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kernel import migrate
from kernel.db import Database
from kernel.errors import ConfigurationError
from kernel.models import Campaign, ImportBatch, Person
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync.sources import parse_source, run_configured_sources, shown
from sync.synthetic import HEADERS

KEYRING = KeyRing("test-secret-sync-sources-0123456789abcdef")
AS_OF = date(2026, 11, 24)


def _row(atena: str, name: str, phone: str = "090-1234-5678") -> dict[str, str]:
    return {
        "宛名番号": atena,
        "氏名": name,
        "氏名カナ": "ヤマダ　タロウ",
        "電話番号1": phone,
        "所管課": "納税課",
        "債権種別": "市県民税",
        "年度": "令和8年度",
        "期別": "1",
        "納期限": "令和8年6月30日",
        "未納額": "12,300",
    }


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(HEADERS)
        for values in rows:
            writer.writerow([values.get(column, "") for column in HEADERS])
    return path


def _sql_source(path: Path) -> str:
    connection = sqlite3.connect(path)
    columns = ", ".join(f'"{name}" TEXT' for name in HEADERS)
    connection.execute(f"CREATE TABLE 催告対象 ({columns})")
    values = _row("300", "佐藤　花子", "03-1234-5678")
    marks = ", ".join("?" * len(HEADERS))
    connection.execute(
        f"INSERT INTO 催告対象 VALUES ({marks})", [values.get(h, "") for h in HEADERS]
    )
    connection.commit()
    connection.close()
    return f"sql:sqlite:///{path}#催告対象"


def _count(database: Database, model: type) -> int:
    with database.read_only() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_every_source_gets_its_own_campaign_and_a_broken_one_does_not_stop_the_others(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _csv(tmp_path / "a.csv", [_row("100", "山田　太郎"), _row("101", "山田　次郎")])
    second = _csv(tmp_path / "b.csv", [_row("200", "鈴木　一郎")])
    missing = tmp_path / "missing.csv"
    sql = _sql_source(tmp_path / "source.sqlite3")
    settings = SyncSettings(sources=[f"csv:{first}", f"csv:{missing}", f"csv:{second}", sql])
    with caplog.at_level(logging.INFO, logger="sync.sources"):
        outcomes = run_configured_sources(
            database, KEYRING, settings, "scheduler", AS_OF, rejects_dir=tmp_path / "rejects"
        )
    names = [f"csv:{first}", f"csv:{missing}", f"csv:{second}", sql.partition("#")[0]]
    assert [o.source for o in outcomes] == names
    loaded = [o.summary.persons_loaded if o.summary else None for o in outcomes]
    assert loaded == [2, None, 1, 1]
    assert outcomes[1].error and "missing.csv" in outcomes[1].error
    assert outcomes[1].to_dict() == {"source": f"csv:{missing}", "error": outcomes[1].error}
    assert outcomes[0].to_dict()["rows_read"] == 2
    assert _count(database, Campaign) == 3 and _count(database, Person) == 4
    with database.read_only() as session:
        actors = set(session.scalars(select(ImportBatch.imported_by)))
    assert actors == {"scheduler"}
    assert "山田" not in caplog.text and "090" not in caplog.text  # counts only in logs
    assert "2 rows read" in caplog.text


def test_a_second_run_loads_nothing_new(database: Database, tmp_path: Path) -> None:
    path = _csv(tmp_path / "a.csv", [_row("100", "山田　太郎")])
    settings = SyncSettings(sources=[f"csv:{path}"])
    run_configured_sources(database, KEYRING, settings, "scheduler", AS_OF)
    again = run_configured_sources(database, KEYRING, settings, "scheduler", AS_OF)
    assert again[0].summary is not None and again[0].summary.already_imported
    assert _count(database, Person) == 1


def test_no_sources_configured_is_a_configuration_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    migrate.upgrade(database)
    with pytest.raises(ConfigurationError, match="sync.sources"):
        run_configured_sources(database, KEYRING, SyncSettings(), "scheduler", AS_OF)
    database.dispose()


def test_source_entries_are_parsed_and_shown_without_passwords() -> None:
    assert parse_source("tsv:/data/a.tsv;layout=city") == ("tsv", "/data/a.tsv", "city")
    with pytest.raises(ConfigurationError):
        parse_source("fixed:/data/host.dat")
    with pytest.raises(ConfigurationError):
        parse_source("ftp:/data/a.csv")
    assert shown("sql:postgresql://ro:secret@db/arrears#v") == "sql:postgresql://ro:***@db/arrears"


def test_cli_run_reports_each_source_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from dunning.cli_sync import sync_app
    from kernel.settings import get_settings

    database = Database(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    migrate.upgrade(database)
    good = _csv(tmp_path / "good.csv", [_row("100", "山田　太郎")])
    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", database.url)
    monkeypatch.setenv("DUNNING_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DUNNING_SYNC__SOURCES", json.dumps([f"csv:{good}", "csv:/nope.csv"]))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(sync_app, ["run", "--as-of", "2026-11-24", "--json"])
        assert result.exit_code == 1  # one source failed
        data = json.loads(result.stdout)
        assert data["sources"][0]["persons_loaded"] == 1
        assert data["sources"][1]["source"] == "csv:/nope.csv" and data["sources"][1]["error"]
    finally:
        get_settings.cache_clear()
        database.dispose()
