"""Report outputs: rich table, CSV (CP932 or UTF-8), Excel .xlsx, PDF (A4) and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from rich.console import Console
from rich.table import Table

from reports.model import CampaignReport, Figures, Report
from reports.sections import Cell, Decimal1, Percent, Section, format_cell, report_sections

FORMATS = ("table", "csv", "xlsx", "pdf", "json")
HEADER_FILL = PatternFill("solid", fgColor="DDE6F0")


def print_table(report: Report, console: Console) -> None:
    console.print(f"[bold]{report.title}[/bold]  ({report.start} - {report.end})")
    for section in report_sections(report):
        if not section.rows or len(section.header) < 2:
            console.print(f"{section.title}: 該当なし")
            continue
        table = Table(title=section.title, title_justify="left")
        for index, name in enumerate(section.header):
            table.add_column(name, justify="left" if index == 0 else "right")
        for row in section.rows:
            table.add_row(*(format_cell(cell) for cell in row))
        console.print(table)


def _leading_labels(row: list[Cell]) -> int:
    """How many leading text cells name the row (e.g. 経路 and 結果コード)."""
    count = 0
    while count < len(row) and isinstance(row[count], str):
        count += 1
    return max(count, 1)


def _long_rows(sections: list[Section]) -> Iterator[list[str]]:
    for section in sections:
        for row in section.rows:
            keys = _leading_labels(row)
            label = " / ".join(str(c) for c in row[:keys])
            for column, cell in zip(section.header[keys:], row[keys:], strict=True):
                value = "" if cell is None else (f"{cell:.6f}" if isinstance(cell, float) else cell)
                yield [section.title, label, column, str(value)]


def csv_bytes(report: Report, encoding: str = "cp932") -> bytes:
    """Long format (表, 項目, 列, 値): one value per line, easy to filter in Excel."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["表", "項目", "列", "値"])
    writer.writerows(_long_rows(report_sections(report)))
    return buffer.getvalue().encode(encoding, errors="replace")


def _xlsx_sheet(workbook: Workbook, section: Section) -> None:
    sheet = workbook.create_sheet(section.title[:31].replace("/", "・"))
    sheet.append(section.header)
    for cell in sheet[1]:
        cell.font, cell.fill = Font(bold=True), HEADER_FILL
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    for row in section.rows:
        sheet.append(list(row))
        for cell, value in zip(sheet[sheet.max_row], row, strict=True):
            if isinstance(value, Percent):
                cell.number_format = "0.0%"
            elif isinstance(value, Decimal1):
                cell.number_format = "#,##0.0"
            elif isinstance(value, int):
                cell.number_format = "#,##0"
    for index, name in enumerate(section.header, start=1):
        width = max([len(str(name)) * 2, 12] + [len(str(r[index - 1])) * 2 for r in section.rows])
        sheet.column_dimensions[get_column_letter(index)].width = min(width, 48)
    sheet.freeze_panes = "B2"


def xlsx_bytes(report: Report) -> bytes:
    """One sheet per section, with a header row, number formats and frozen panes."""
    workbook = Workbook()
    cover = workbook.active
    cover.title = "表紙"
    cover.append([report.title])
    cover["A1"].font = Font(bold=True, size=14)
    cover.append(["期間", f"{report.start} - {report.end}"])
    cover.append(["作成日時", report.generated_at.isoformat(timespec="seconds")])
    cover.column_dimensions["A"].width = 16
    cover.column_dimensions["B"].width = 40
    for section in report_sections(report):
        _xlsx_sheet(workbook, section)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _figures_dict(figures: Figures) -> dict[str, Any]:
    effect = figures.effect()
    interval = effect.interval
    names = (
        "targets", "phone_known", "attempts", "attempts_by_channel", "answered", "right_party",
        "identity_confirmed", "promises", "promise_yen", "handoffs", "callbacks", "sms_sent",
        "sms_delivered", "sms_failed", "letters_printed", "talk_seconds", "outcomes",
        "handoff_reasons", "phone_known_rate", "contact_rate", "rpc_rate", "promise_rate",
    )  # fmt: skip
    data: dict[str, Any] = {name: getattr(figures, name) for name in names}
    data["effect"] = {
        "contact": asdict(effect.contact),
        "holdout": asdict(effect.holdout),
        "difference": effect.difference,
        "ci95": None if interval is None else [interval.low, interval.high],
        "method": "newcombe_hybrid_score",
    }
    return data


def _campaign_dict(campaign: CampaignReport) -> dict[str, Any]:
    return {
        "campaign_id": campaign.campaign_id,
        "name": campaign.name,
        "status": campaign.status,
        "total": _figures_dict(campaign.total),
        "kinds": {kind: _figures_dict(f) for kind, f in campaign.kinds.items()},
        "operators": [asdict(row) for row in campaign.operators],
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "title": report.title,
        "period": report.period,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "generated_at": report.generated_at.isoformat(timespec="seconds"),
        "total": _figures_dict(report.total),
        "kinds": {kind: _figures_dict(f) for kind, f in report.kinds.items()},
        "operators": [asdict(row) for row in report.operators],
        "campaigns": [_campaign_dict(c) for c in report.campaigns],
    }


def json_bytes(report: Report) -> bytes:
    return json.dumps(report_dict(report), ensure_ascii=False, indent=2).encode()


def write_report(
    report: Report, fmt: str, out: Path, *, font: Path | None = None, encoding: str = "cp932"
) -> Path:
    """Write one format to ``out`` (PDF needs the Japanese font path)."""
    if fmt == "csv":
        data = csv_bytes(report, encoding)
    elif fmt == "xlsx":
        data = xlsx_bytes(report)
    elif fmt == "json":
        data = json_bytes(report)
    elif fmt == "pdf":
        from reports.pdf import pdf_bytes

        if font is None:
            raise ValueError("a PDF needs the Japanese font path")
        data = pdf_bytes(report, font)
    else:
        raise ValueError(f"unknown report format {fmt!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
