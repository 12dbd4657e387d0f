"""Results back to the arrears system, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from kernel.db import Database
from kernel.errors import Conflict
from kernel.models import (
    Attempt,
    AttemptStatus,
    AuditEvent,
    Campaign,
    CampaignStatus,
    Channel,
    HandOff,
    Person,
    ResultsExport,
    Role,
    User,
)
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync.importer import import_file
from sync.results import NOTES_FIELD, export_results, load_results_layout
from sync.synthetic import HEADERS

KEYRING = KeyRing("test-secret-results-export-0123456789abcdef")
AS_OF = date(2026, 11, 24)
CALLED_AT = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)  # 10:30 in Tokyo


def _campaign(database: Database, tmp_path: Path) -> int:
    rows = [
        {"宛名番号": atena, "氏名": name, "氏名カナ": "ヤマダ", "電話番号1": phone,
         "納期限": "2026-06-30", "未納額": "5000", "債権種別": "市県民税", "期別": "1"}
        for atena, name, phone in (("0001", "山田　一", "090-1111-2222"),
                                   ("0002", "山田　二", "090-3333-4444"),
                                   ("0003", "山田　三", ""))
    ]  # fmt: skip
    path = tmp_path / "export.csv"
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(HEADERS)
        writer.writerows([row.get(h, "") for h in HEADERS] for row in rows)
    summary = import_file(database, KEYRING, SyncSettings(), path, as_of=AS_OF)
    assert summary.campaign_id is not None and summary.persons_loaded == 3
    return summary.campaign_id


def _contacts(database: Database, campaign_id: int, status: CampaignStatus) -> None:
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.wrapped_data_key is not None
        cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign_id)
        campaign.status = status
        first, second, _ = session.scalars(select(Person).order_by(Person.id)).all()
        operator = User(
            username="op.suzuki", display_name="鈴木", role=Role.OPERATOR, password_hash="x"
        )
        session.add(operator)
        session.flush()
        common = {"campaign_id": campaign_id, "status": AttemptStatus.COMPLETED}
        session.add_all(
            [
                Attempt(**common, person_id=first.id, channel=Channel.IVR, sequence_no=1,
                        scheduled_at=CALLED_AT.replace(day=24), idempotency_key="a1",
                        started_at=CALLED_AT.replace(day=24), outcome_code="no_answer"),
                Attempt(**common, person_id=first.id, channel=Channel.OPERATOR, sequence_no=2,
                        scheduled_at=CALLED_AT, idempotency_key="a2", started_at=CALLED_AT,
                        answered_at=CALLED_AT, outcome_code="promise",
                        promise_date=date(2026, 12, 10), promise_amount_yen=5000,
                        operator_id=operator.id,
                        sealed_notes=cipher.seal_text("=cmd|' /C calc'!A0\n来週納付", NOTES_FIELD)),
                Attempt(**common, person_id=second.id, channel=Channel.SMS, sequence_no=1,
                        scheduled_at=CALLED_AT, idempotency_key="b1", outcome_code="sms_sent"),
                HandOff(campaign_id=campaign_id, person_id=first.id, reason="installment"),
            ]
        )  # fmt: skip


def _read(path: Path, encoding: str = "cp932") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as stream:
        return list(csv.DictReader(stream))


def test_completed_campaign_is_exported_once_per_target(database: Database, tmp_path: Path) -> None:
    campaign_id = _campaign(database, tmp_path)
    _contacts(database, campaign_id, CampaignStatus.COMPLETED)
    out = tmp_path / "out" / "results.csv"
    summary = export_results(database, KEYRING, campaign_id, out, actor="staff.tanaka")
    assert (summary.rows, summary.status_before, summary.status_after) == (
        3,
        "completed",
        "exported",
    )
    lines = _read(out)
    assert [line["宛名番号"] for line in lines] == ["0001", "0002", "0003"]
    first, second, third = lines
    assert first["接触日時"] == "2026-11-25 10:30" and first["経路"] == "operator"
    assert (first["結果コード"], first["約束日"], first["約束金額"]) == (
        "promise",
        "2026-12-10",
        "5000",
    )
    assert (first["引継"], first["オペレータID"]) == ("1", "op.suzuki")
    assert first["メモ"] == "'=cmd|' /C calc'!A0 来週納付"
    assert (second["結果コード"], second["経路"], second["引継"]) == ("sms_sent", "sms", "0")
    assert (third["結果コード"], third["経路"]) == ("not_attempted", "letter")
    with database.read_only() as session:
        record = session.scalars(select(ResultsExport)).one()
        assert record.row_count == 3 and record.exported_by == "staff.tanaka"
        assert record.file_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.exported_at is not None
        actions = set(session.scalars(select(AuditEvent.action)))
    assert {"results.exported", "campaign.exported"} <= actions


def test_per_attempt_export_with_a_layout(database: Database, tmp_path: Path) -> None:
    campaign_id = _campaign(database, tmp_path)
    _contacts(database, campaign_id, CampaignStatus.RUNNING)
    out = tmp_path / "per_attempt.csv"
    layout = load_results_layout("results_kokuho")
    summary = export_results(database, KEYRING, campaign_id, out, layout=layout, per_attempt=True)
    assert summary.rows == 4 and summary.status_after == "running"
    lines = _read(out)
    assert [(line["宛名ＣＤ"], line["回数"], line["結果区分"]) for line in lines] == [
        ("0001", "1", "no_answer"),
        ("0001", "2", "promise"),
        ("0002", "1", "sms_sent"),
        ("0003", "", "not_attempted"),
    ]
    assert lines[1]["接触日時"] == "202611251030" and lines[1]["納付約束日"] == "20261210"
    assert lines[1]["職員引継"] == "有" and lines[2]["職員引継"] == "無"
    assert lines[0]["納付約束日"] == ""  # the promise belongs to the second attempt only


def test_wiped_campaign_cannot_be_exported(database: Database, tmp_path: Path) -> None:
    campaign_id = _campaign(database, tmp_path)
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.status, campaign.wrapped_data_key = CampaignStatus.WIPED, None
    with pytest.raises(Conflict):
        export_results(database, KEYRING, campaign_id, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_cli_export_results_and_exclusions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from dunning.cli_sync import export_app, parse_source, sync_app
    from kernel import migrate
    from kernel.settings import get_settings

    database = Database(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    migrate.upgrade(database)
    campaign_id = _campaign(database, tmp_path)
    database.dispose()
    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", database.url)
    monkeypatch.setenv("DUNNING_DATA_KEY_SECRET", KEYRING.master_secret)
    get_settings.cache_clear()
    app = typer.Typer()  # registered as in dunning.cli: dunning sync ..., dunning export ...
    app.add_typer(sync_app, name="sync")
    app.add_typer(export_app, name="export")
    try:
        out = tmp_path / "r.csv"
        args = ["export", "results", str(campaign_id), "--out", str(out), "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == 3 and len(_read(out)) == 3
        listed = tmp_path / "x.csv"
        listed.write_text("宛名番号,理由\r\n0001,DV\r\n", encoding="cp932")
        args = ["sync", "exclusions", str(listed), "--as-of", "2026-11-24T06:00+09:00", "--json"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["entries"] == 1
    finally:
        get_settings.cache_clear()
    assert parse_source("fixed:/data/host.dat;layout=cobol_fixed") == (
        "fixed",
        "/data/host.dat",
        "cobol_fixed",
    )
    assert parse_source("sql:postgresql://ro@db/arrears#催告対象")[1].endswith("#催告対象")
