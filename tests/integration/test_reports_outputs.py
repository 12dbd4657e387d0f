"""Report outputs on a real imported campaign: xlsx, PDF (fonts embedded, Japanese text),
CSV, JSON, the scheduled job, and the same report after the wipe."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from dialer.wipe import wipe_campaign
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.errors import ConfigurationError
from kernel.settings import load_settings
from reports.build import monthly_report
from reports.fonts import find_japanese_font
from reports.render import csv_bytes, report_dict, write_report
from reports.scheduled import write_daily_reports
from tests.integration.test_reports_support import load_campaign, make_operators, simulate_contacts

MONTH = "2026-11"
needs_poppler = pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils missing")


@pytest.fixture
def campaign(database: Database, tmp_path: Path) -> int:
    loaded = load_campaign(database, tmp_path, persons=40)
    simulate_contacts(database, loaded.campaign_id, make_operators(database))
    return loaded.campaign_id


def _report(database: Database, campaign_id: int) -> dict[str, object]:
    with database.read_only() as session:
        data = report_dict(monthly_report(session, MONTH, [campaign_id]))
    data.pop("generated_at")
    for entry in data["campaigns"]:
        entry.pop("status")  # the wipe moves the status, nothing else may change
    return data


def test_xlsx_reopens_with_the_same_numbers(
    database: Database, campaign: int, tmp_path: Path
) -> None:
    with database.read_only() as session:
        report = monthly_report(session, MONTH, [campaign])
    path = write_report(report, "xlsx", tmp_path / "m.xlsx")
    book = load_workbook(path)
    assert {"表紙", "概要 (催告別)", "債権種別", "結果コード別件数", "オペレータ生産性"} <= set(
        book.sheetnames
    )
    rows = {r[0]: r[1] for r in book["概要 (催告別)"].iter_rows(min_row=2, values_only=True)}
    assert rows["対象者数"] == report.total.targets > 0
    assert rows["接触試行 計"] == report.total.attempts == report.total.targets
    assert rows["本人接触"] == report.total.right_party
    assert rows["納付約束 金額 (円)"] == report.total.promise_yen
    assert rows["接触率 (応答/架電)"] == pytest.approx(report.total.contact_rate)
    operators = list(book["オペレータ生産性"].iter_rows(min_row=2, values_only=True))
    assert sum(r[1] for r in operators) == sum(o.calls for o in report.operators)


@needs_poppler
def test_pdf_embeds_the_japanese_font_and_renders(
    database: Database, campaign: int, tmp_path: Path
) -> None:
    with database.read_only() as session:
        report = monthly_report(session, MONTH, [campaign])
    path = write_report(report, "pdf", tmp_path / "m.pdf", font=find_japanese_font())
    fonts = subprocess.run(
        ["pdffonts", str(path)], capture_output=True, text=True, check=True
    ).stdout
    ipa = [line for line in fonts.splitlines() if "IPAex" in line]
    assert ipa and all(" yes yes " in line for line in ipa), fonts  # embedded, subset
    text = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    for phrase in ("月報", "本人接触", "対象者数", "結果コード別件数"):
        assert phrase in text
    assert "\ufffd" not in text
    subprocess.run(
        ["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
        check=True,
    )
    page = next(tmp_path.glob("page*.png"))
    assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.stat().st_size > 2000


def test_csv_cp932_and_json_agree(database: Database, campaign: int) -> None:
    with database.read_only() as session:
        report = monthly_report(session, MONTH, [campaign])
    rows = list(csv.reader(io.StringIO(csv_bytes(report, "cp932").decode("cp932"))))
    assert rows[0] == ["表", "項目", "列", "値"]
    attempts = [
        r for r in rows if r[1] == "接触試行 計" and r[2] == "合計" and r[0] == "概要 (催告別)"
    ]
    assert attempts == [["概要 (催告別)", "接触試行 計", "合計", str(report.total.attempts)]]
    data = json.loads(json.dumps(report_dict(report)))
    assert data["total"]["attempts"] == report.total.attempts
    assert data["campaigns"][0]["total"]["outcomes"] == report.total.outcomes


def test_scheduled_daily_job_writes_the_configured_formats(
    database: Database, campaign: int, tmp_path: Path
) -> None:
    settings = load_settings(environment="demo", var_dir=tmp_path / "var",
                             reports={"daily_formats": ["csv", "json", "xlsx"]})  # fmt: skip
    written = write_daily_reports(database, settings, date(2026, 11, 2))
    assert [p.name for p in written] == [
        "daily_20261102.csv",
        "daily_20261102.json",
        "daily_20261102.xlsx",
    ]
    assert json.loads(written[1].read_text())["period"] == "daily"


def test_report_is_unchanged_by_the_wipe(database: Database, campaign: int, tmp_path: Path) -> None:
    before = _report(database, campaign)
    wipe_campaign(database, LocalCoordination(), tmp_path / "var", campaign, actor="test",
                  force=True, reason="test")  # fmt: skip
    from kernel.models import Person

    with database.read_only() as session:
        assert session.query(Person).filter_by(campaign_id=campaign).count() == 0
    assert _report(database, campaign) == before


def test_missing_font_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="fonts-ipaexfont"):
        find_japanese_font(None, "NoSuchFamilyAtAll")
    with pytest.raises(ConfigurationError, match="font_path"):
        find_japanese_font(Path("/nonexistent.ttf"))
