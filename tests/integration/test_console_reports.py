"""Console pages 日報・月報 and 催告書の印刷待ち: tables, charts, audited downloads, CSRF,
roles and HTML escaping, on a campaign loaded through the real importer (SQLite)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from openpyxl import load_workbook
from sqlalchemy import select

from agent_console.accounts import add_user
from agent_console.app import create_console
from agent_console.context import ConsoleContext
from dialer.holdout import assign_holdout
from kernel import migrate
from kernel.calendar import CallingWindow
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import AuditEvent, Campaign, Person, Role, TargetStatus
from kernel.settings import Settings
from reports.letters import select_recipients
from sync.loader import person_digest
from sync.payments import import_payments
from tests.e2e.world import ACCOUNTS, PASSWORD, console_settings, signed_in
from tests.integration.test_reports_support import (
    KEYRING,
    load_campaign,
    make_operators,
    simulate_contacts,
)

HOSTILE_NAME = "<script>alert(1)</script>11月催告"
ASSIGNED = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
MONTHLY = "period=monthly&month=2026-11"
DAILY = "period=daily&day=2026-11-02"


@dataclass
class Site:
    database: Database
    directory: Path
    campaign_id: int

    def app(self, settings: Settings | None = None) -> FastAPI:
        chosen = settings or console_settings(self.database.url, var_dir=self.directory / "var")
        ctx = ConsoleContext(
            settings=chosen,
            database=self.database,
            coordination=LocalCoordination(),
            keyring=KEYRING,
            calling_window=CallingWindow(chosen.calling_window.policy()),
        )
        return create_console(ctx)

    def audit(self, action: str) -> list[AuditEvent]:
        with self.database.read_only() as session:
            query = select(AuditEvent).where(AuditEvent.action == action)
            return list(session.scalars(query.order_by(AuditEvent.id)))


def _pay_some(database: Database, campaign_id: int, numbers: list[str], folder: Path) -> None:
    digest = person_digest(KEYRING)
    with database.read_only() as session:
        rows = session.execute(
            select(Person.ref_digest, Person.status).where(Person.campaign_id == campaign_id)
        )
        statuses = dict(rows.tuples().all())
    held = [n for n in numbers if statuses.get(digest(n)) is TargetStatus.HOLDOUT]
    contacted = [n for n in numbers if statuses.get(digest(n)) is TargetStatus.ACTIVE]
    path = folder / "paid.csv"
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(("宛名番号", "納付額", "納付日"))
        writer.writerows((n, "8000", "2026-11-10") for n in contacted[:5] + held[:1])
    import_payments(database, KEYRING, path, now=ASSIGNED)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("reports-console")
    database = Database(f"sqlite:///{directory / 'console.sqlite3'}")
    migrate.upgrade(database)
    loaded = load_campaign(database, directory, persons=60)
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, loaded.campaign_id)
        assert campaign is not None
        campaign.name, campaign.holdout_share = HOSTILE_NAME, 0.2
        session.flush()
        assign_holdout(session, loaded.campaign_id, seed=4, actor="test", now=ASSIGNED)
        for role, username in ACCOUNTS.items():
            add_user(session, username, f"{role.value}さん", role, PASSWORD, "test")
    simulate_contacts(database, loaded.campaign_id, make_operators(database))
    _pay_some(database, loaded.campaign_id, loaded.atena_numbers, directory)
    yield Site(database, directory, loaded.campaign_id)
    database.dispose()


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.STAFF])
def test_the_report_page_shows_the_sections_the_effect_and_the_charts(
    site: Site, role: Role
) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[role])

    page = client.get(f"/supervisor/reports?{MONTHLY}")

    assert page.status_code == 200, page.text
    for heading in ("月報", "概要 (催告別)", "債権種別", "結果コード別件数", "本人接触"):
        assert heading in page.text
    assert 'data-section="effect"' in page.text and "保留群" in page.text
    assert f'src="/supervisor/reports/chart/funnel.png?{MONTHLY.replace("&", "&amp;")}"' in (
        page.text
    )
    assert "/supervisor/reports/download/xlsx?" in page.text


def test_a_daily_report_for_one_campaign(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])

    page = client.get(f"/supervisor/reports?{DAILY}&campaign={site.campaign_id}")

    assert page.status_code == 200
    assert "日報" in page.text and f'value="{site.campaign_id}" selected' in page.text


def test_campaign_names_are_escaped_on_both_pages(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])

    for url in (f"/supervisor/reports?{MONTHLY}", "/supervisor/letters"):
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;11月催告" in page.text


@pytest.mark.parametrize("kind", ["funnel", "outcomes"])
def test_charts_are_png_images(site: Site, kind: str) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.STAFF])

    chart = client.get(f"/supervisor/reports/chart/{kind}.png?{MONTHLY}")

    assert chart.status_code == 200
    assert chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_bad_parameters_get_a_japanese_message(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])

    assert client.get("/supervisor/reports/chart/pie.png").status_code == 422
    bad_day = client.get("/supervisor/reports?period=daily&day=2026-13-40")
    assert bad_day.status_code == 422 and "日付の形式" in bad_day.text
    assert client.get("/supervisor/reports?period=monthly&month=2026/11").status_code == 422
    assert client.get(f"/supervisor/reports/download/docx?{MONTHLY}").status_code == 422


def test_downloads_have_their_content_types_and_are_audited(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])
    before = len(site.audit("report.downloaded"))
    base = "/supervisor/reports/download"

    cp932 = client.get(f"{base}/csv?{MONTHLY}&encoding=cp932")
    utf8 = client.get(f"{base}/csv?{MONTHLY}&encoding=utf-8")
    xlsx = client.get(f"{base}/xlsx?{MONTHLY}")
    pdf = client.get(f"{base}/pdf?{MONTHLY}")
    as_json = client.get(f"{base}/json?{MONTHLY}&campaign={site.campaign_id}")

    assert cp932.headers["content-type"] == "text/csv; charset=cp932"
    assert cp932.content.decode("cp932").startswith("表,項目,列,値")
    assert utf8.headers["content-type"] == "text/csv; charset=utf-8"
    # cp932 has no U+301C WAVE DASH: Python writes it as the full-width tilde U+FF5E
    text = utf8.content.decode("utf-8")
    assert text.replace("〜", "～") == cp932.content.decode("cp932")
    assert xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "概要 (催告別)" in load_workbook(io.BytesIO(xlsx.content)).sheetnames
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert as_json.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(as_json.content)["campaigns"][0]["campaign_id"] == site.campaign_id
    assert "attachment" in pdf.headers["content-disposition"]
    events = site.audit("report.downloaded")[before:]
    assert [e.detail["format"] for e in events] == ["csv", "csv", "xlsx", "pdf", "json"]
    assert {e.object_id for e in events} == {"monthly:2026-11"}
    assert events[-1].detail["campaign_id"] == site.campaign_id


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
def test_operators_and_admins_cannot_open_reports(site: Site, role: Role) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[role])

    for url in (
        "/supervisor/reports",
        "/supervisor/reports/chart/funnel.png",
        "/supervisor/letters",
    ):
        assert client.get(url).status_code == 403


def test_a_missing_font_is_explained_in_japanese(site: Site) -> None:
    settings = console_settings(
        site.database.url,
        var_dir=site.directory / "var",
        reports={"font_path": site.directory / "missing.ttf"},
    )
    client, _ = signed_in(site.app(settings), ACCOUNTS[Role.SUPERVISOR])

    page = client.get(f"/supervisor/reports?{MONTHLY}")
    chart = client.get(f"/supervisor/reports/chart/funnel.png?{MONTHLY}")

    assert page.status_code == 200 and 'id="font-missing"' in page.text
    assert "日本語フォントが見つからない" in page.text and "chart/funnel.png" not in page.text
    assert chart.status_code == 503 and "日本語フォントが見つからない" in chart.text


def _waiting(site: Site) -> int:
    with site.database.read_only() as session:
        return len(select_recipients(session, site.campaign_id, follow_up=False))


def test_staff_sees_the_letter_queue_but_cannot_print(site: Site) -> None:
    client, token = signed_in(site.app(), ACCOUNTS[Role.STAFF])

    page = client.get("/supervisor/letters")
    refused = client.post(
        f"/supervisor/letters/{site.campaign_id}/print", data={"csrf_token": token}
    )

    assert page.status_code == 200
    assert f'data-field="waiting">{_waiting(site)}<' in page.text
    assert f"/supervisor/letters/{site.campaign_id}/print" not in page.text
    assert refused.status_code == 403
    assert client.get(f"/supervisor/letters/{site.campaign_id}/download").status_code == 403


def test_printing_needs_the_csrf_token(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])
    waiting, runs = _waiting(site), len(site.audit("letters.printed"))

    forged = client.post(f"/supervisor/letters/{site.campaign_id}/print", data={})

    assert forged.status_code == 403 and "CSRF" in forged.text
    assert _waiting(site) == waiting and len(site.audit("letters.printed")) == runs


def test_a_supervisor_prints_and_downloads_the_letters(site: Site) -> None:
    client, token = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])
    waiting = _waiting(site)
    assert waiting > 0
    page = client.get("/supervisor/letters")
    assert "印刷用PDFを作成" in page.text

    printed = client.post(
        f"/supervisor/letters/{site.campaign_id}/print",
        data={"csrf_token": token},
        follow_redirects=False,
    )

    assert printed.status_code == 303
    shown = client.get(printed.headers["location"])
    assert 'id="printed"' in shown.text and 'data-field="waiting">0<' in shown.text
    event = site.audit("letters.printed")[-1]
    assert event.object_id == str(site.campaign_id) and event.detail["letters"] == waiting
    link = f"/supervisor/letters/{site.campaign_id}/download?file="
    assert link in shown.text
    pdf = client.get(f"/supervisor/letters/{site.campaign_id}/download")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    download = site.audit("letters.downloaded")[-1]
    assert download.object_id == str(site.campaign_id) and download.actor.startswith("user:")
    assert download.detail == {"letters": waiting, "pages": event.detail["pages"]}


def test_a_batch_name_outside_the_pattern_is_refused(site: Site) -> None:
    client, _ = signed_in(site.app(), ACCOUNTS[Role.SUPERVISOR])

    response = client.get(
        f"/supervisor/letters/{site.campaign_id}/download", params={"file": "../../console.sqlite3"}
    )

    assert response.status_code == 422
