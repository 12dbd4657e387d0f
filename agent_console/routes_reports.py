"""日報・月報 pages (tables, server-drawn charts, downloads) for supervisors and staff.

Reports are aggregates only (no personal data), so a download is audited once per file with
the period and format; query strings carry dates and campaign ids, never anything personal.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import ConsoleUser, require_roles
from kernel import aggregates, audit
from kernel.errors import ConfigurationError, DunningError, InvalidInput
from kernel.models import Campaign, Role
from reports.build import daily_report, monthly_report
from reports.charts import CHARTS, chart_png
from reports.fonts import find_japanese_font
from reports.model import Report
from reports.render import csv_bytes, json_bytes, xlsx_bytes
from reports.sections import Section, format_cell, report_sections

router = APIRouter(prefix="/supervisor/reports")
Ctx = Annotated[ConsoleContext, Depends(console_context)]
Reader = Annotated[ConsoleUser, Depends(require_roles(Role.SUPERVISOR, Role.STAFF))]
CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "json": "application/json",
}
ENCODINGS = {"cp932": "cp932", "utf-8": "utf-8", "utf8": "utf-8"}
FONT_MISSING = (
    "日本語フォントが見つからないため、グラフとPDFを作成できません。"
    "システム管理者に連絡してください (fonts-ipaexfont の導入、または reports.font_path の設定)。"
)
_CHART_LOCK = threading.Lock()  # pyplot keeps global state: draw one chart at a time


class FontMissing(DunningError):
    """The Japanese font for charts and PDF is not installed or not configured."""

    http_status = 503


@dataclass(frozen=True)
class ReportQuery:
    """What the supervisor picked: a day (日報) or a month (月報), optionally one campaign."""

    period: str
    day: date
    month: str
    campaign_id: int | None

    @property
    def campaign_ids(self) -> list[int] | None:
        return None if self.campaign_id is None else [self.campaign_id]

    def as_query(self) -> str:
        """The query string for chart and download links (dates and ids only)."""
        picked = f"day={self.day.isoformat()}" if self.period == "daily" else f"month={self.month}"
        campaign = "" if self.campaign_id is None else f"&campaign={self.campaign_id}"
        return f"period={self.period}&{picked}{campaign}"

    @property
    def label(self) -> str:
        return self.day.isoformat() if self.period == "daily" else self.month


def _parse_day(raw: str | None, default: date) -> date:
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError as error:
        raise InvalidInput(f"日付の形式が正しくありません (YYYY-MM-DD): {raw[:20]!r}") from error


def _parse_campaign(raw: str | None) -> int | None:
    if not raw:
        return None
    if not raw.isdigit():
        raise InvalidInput("催告の指定が正しくありません")
    return int(raw)


def report_query(request: Request, ctx: ConsoleContext) -> ReportQuery:
    params = request.query_params
    period = params.get("period", "daily")
    if period not in ("daily", "monthly"):
        raise InvalidInput("期間は daily (日報) か monthly (月報) を指定してください")
    yesterday = aggregates.local_day(ctx.now()) - timedelta(days=1)
    month = params.get("month") or yesterday.strftime("%Y-%m")
    if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
        raise InvalidInput(f"月の形式が正しくありません (YYYY-MM): {month[:20]!r}")
    day = _parse_day(params.get("day"), yesterday)
    return ReportQuery(period, day, month, _parse_campaign(params.get("campaign")))


def _build(ctx: ConsoleContext, query: ReportQuery) -> Report:
    with ctx.database.read_only() as session:
        if query.period == "monthly":
            return monthly_report(session, query.month, query.campaign_ids)
        return daily_report(session, query.day, query.campaign_ids)


def _campaign_choices(ctx: ConsoleContext) -> list[tuple[int, str]]:
    with ctx.database.read_only() as session:
        rows = session.execute(select(Campaign.id, Campaign.name).order_by(Campaign.id))
        return [(int(i), str(n)) for i, n in rows]


def report_font(ctx: ConsoleContext) -> Path:
    """The Japanese font, or FontMissing with a message staff can act on."""
    settings = ctx.settings.reports
    try:
        return find_japanese_font(settings.font_path, settings.font_name)
    except ConfigurationError as error:
        raise FontMissing(FONT_MISSING) from error


def _font_available(ctx: ConsoleContext) -> bool:
    try:
        report_font(ctx)
    except FontMissing:
        return False
    return True


def _html_section(section: Section) -> dict[str, Any]:
    rows = [[format_cell(cell) for cell in row] for row in section.rows]
    return {"key": section.key, "title": section.title, "header": section.header, "rows": rows}


def _page_values(ctx: ConsoleContext, query: ReportQuery) -> dict[str, Any]:
    report = _build(ctx, query)
    sections = [_html_section(s) for s in report_sections(report)]
    return {
        "report": report,
        "query": query,
        "link_query": query.as_query(),
        "sections": [s for s in sections if s["key"] != "effect"],
        "effect": next(s for s in sections if s["key"] == "effect"),
        "campaigns": _campaign_choices(ctx),
        "font_ok": _font_available(ctx),
        "font_missing": FONT_MISSING,
    }


@router.get("")
async def reports_page(request: Request, ctx: Ctx, user: Reader) -> Response:
    query = report_query(request, ctx)
    values = await run_in_threadpool(_page_values, ctx, query)
    return render(request, "reports.html", values)


def _chart(ctx: ConsoleContext, query: ReportQuery, kind: str) -> bytes:
    report = _build(ctx, query)
    font = report_font(ctx)
    with _CHART_LOCK:
        return chart_png(report, kind, font)


@router.get("/chart/{kind}.png")
async def chart(request: Request, ctx: Ctx, user: Reader, kind: str) -> Response:
    if kind not in CHARTS:
        raise InvalidInput(f"グラフの種類が正しくありません ({', '.join(CHARTS)})")
    query = report_query(request, ctx)
    png = await run_in_threadpool(_chart, ctx, query, kind)
    return Response(png, media_type="image/png")


def _encoding(request: Request) -> str:
    raw = request.query_params.get("encoding", "cp932").lower()
    if raw not in ENCODINGS:
        raise InvalidInput("文字コードは cp932 か utf-8 を指定してください")
    return ENCODINGS[raw]


def _file_bytes(ctx: ConsoleContext, report: Report, fmt: str, encoding: str) -> bytes:
    if fmt == "csv":
        return csv_bytes(report, encoding)
    if fmt == "xlsx":
        return xlsx_bytes(report)
    if fmt == "json":
        return json_bytes(report)
    from reports.pdf import pdf_bytes

    font = report_font(ctx)
    with _CHART_LOCK:  # the PDF embeds the charts
        return pdf_bytes(report, font)


def _download(
    ctx: ConsoleContext, user: ConsoleUser, query: ReportQuery, fmt: str, encoding: str
) -> bytes:
    data = _file_bytes(ctx, _build(ctx, query), fmt, encoding)
    detail: dict[str, audit.DetailValue] = {
        "format": fmt,
        "encoding": encoding if fmt == "csv" else None,
        "campaign_id": query.campaign_id,
    }
    with ctx.database.unit_of_work() as session:
        audit.record(
            session,
            actor=user.actor,
            action="report.downloaded",
            object_type="report",
            object_id=f"{query.period}:{query.label}",
            detail=detail,
        )
    return data


def _file_name(query: ReportQuery, fmt: str) -> str:
    scope = "all" if query.campaign_id is None else f"campaign-{query.campaign_id}"
    return f"report-{query.period}-{query.label}-{scope}.{fmt}"


@router.get("/download/{fmt}")
async def download(request: Request, ctx: Ctx, user: Reader, fmt: str) -> Response:
    if fmt not in CONTENT_TYPES:
        raise InvalidInput(f"形式が正しくありません ({', '.join(CONTENT_TYPES)})")
    query = report_query(request, ctx)
    encoding = _encoding(request)
    data = await run_in_threadpool(_download, ctx, user, query, fmt, encoding)
    media = CONTENT_TYPES[fmt] + (f"; charset={encoding}" if fmt in ("csv", "json") else "")
    if fmt == "json":
        media = "application/json; charset=utf-8"
    disposition = f'attachment; filename="{_file_name(query, fmt)}"'
    return Response(data, media_type=media, headers={"Content-Disposition": disposition})
