"""催告書 print runs: recipients, PDF with the font embedded, manifest, counters, the wipe."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dialer.wipe import wipe_campaign
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import Attempt, Channel, Person
from kernel.settings import LettersSettings, MunicipalitySettings
from reports.build import daily_report
from reports.fonts import find_japanese_font
from reports.letters import LetterJob, load_template, print_letters, wareki
from tests.integration.test_reports_support import KEYRING, load_campaign

NOW = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils missing"
)


def _job(var_dir: Path) -> LetterJob:
    return LetterJob(
        KEYRING, MunicipalitySettings(), LettersSettings(), find_japanese_font(), var_dir
    )


def _letter_targets(database: Database, campaign_id: int) -> int:
    with database.read_only() as session:
        query = select(func.count()).where(
            Person.campaign_id == campaign_id, Person.channel == Channel.LETTER
        )
        return int(session.scalar(query) or 0)


@needs_poppler
def test_print_run_pdf_manifest_and_counters(database: Database, tmp_path: Path) -> None:
    loaded = load_campaign(database, tmp_path, persons=60, seed=9)
    expected = _letter_targets(database, loaded.campaign_id)
    assert expected > 0
    batch = print_letters(database, _job(tmp_path / "var"), loaded.campaign_id, now=NOW)
    assert batch.letters == expected and batch.pages >= expected
    assert batch.pdf is not None and batch.manifest is not None
    assert batch.pdf.parent == tmp_path / "var" / "letters" / f"campaign-{loaded.campaign_id}"
    manifest = json.loads(batch.manifest.read_text(encoding="utf-8"))
    assert manifest["letters"] == expected and manifest["pages"] == batch.pages
    assert manifest["sha256"] == hashlib.sha256(batch.pdf.read_bytes()).hexdigest() == batch.sha256
    fonts = subprocess.run(
        ["pdffonts", str(batch.pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "IPAex" in fonts and " yes yes " in fonts
    text = subprocess.run(
        ["pdftotext", str(batch.pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert text.count("催告") >= expected and text.count("様") >= expected
    assert "〒" in text and "未納額" not in text and "円" not in text  # no amounts by default
    info = subprocess.run(
        ["pdfinfo", str(batch.pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "(A4)" in info and re.search(rf"Pages:\s+{batch.pages}\n", info)
    with database.read_only() as session:
        letters = session.scalar(select(func.count()).where(Attempt.channel == Channel.LETTER))
        report = daily_report(session, NOW.date(), [loaded.campaign_id])
    assert letters == expected
    assert report.total.letters_printed == expected == report.total.attempts_by_channel["letter"]
    assert print_letters(database, _job(tmp_path / "var"), loaded.campaign_id, now=NOW).letters == 0
    wipe_campaign(database, LocalCoordination(), tmp_path / "var", loaded.campaign_id, actor="test",
                  force=True, reason="test")  # fmt: skip
    assert not batch.pdf.parent.exists()


def test_amounts_only_when_the_template_asks(tmp_path: Path) -> None:
    (tmp_path / "plain.j2").write_text(
        "{{ name }} 様\n{% for i in items %}{{ i.kind }}{% endfor %}"
    )
    (tmp_path / "amounts.j2").write_text("{{ name }} 様 合計 {{ total_yen }} 円")
    assert load_template("plain.j2", tmp_path)[1] is False
    assert load_template("amounts.j2", tmp_path)[1] is True


def test_wareki() -> None:
    assert wareki(datetime(2019, 5, 1).date()) == "令和元年5月1日"
    assert wareki(datetime(2026, 11, 5).date()) == "令和8年11月5日"
    assert wareki(datetime(2019, 4, 30).date()) == "平成31年4月30日"
