"""The report as an A4 PDF (landscape: the tables are wide) with the Japanese font embedded
(ReportLab embeds a subset of the TrueType font) and the server-drawn charts."""

from __future__ import annotations

import io
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from reports.charts import chart_png
from reports.model import Report
from reports.sections import Section, format_cell, report_sections

FONT_NAME = "ReportJapanese"
PAGE = landscape(A4)
MAX_COLUMNS = 9  # campaign columns beyond this continue in a further table


def register_font(font: Path, name: str = FONT_NAME) -> str:
    """Register the TrueType font with ReportLab once (the PDF embeds its used glyphs)."""
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(font)))
    return name


def _styles(font: str) -> tuple[ParagraphStyle, ParagraphStyle, ParagraphStyle]:
    title = ParagraphStyle("title", fontName=font, fontSize=16, leading=22, spaceAfter=6)
    heading = ParagraphStyle("heading", fontName=font, fontSize=11, leading=16, spaceBefore=8)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=13)
    return title, heading, body


def _table_style(font: str) -> TableStyle:
    return TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), font, 7.5),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE6F0")),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]
    )


def _column_chunks(section: Section) -> list[list[int]]:
    """Column indexes per printed table: the label column(s) plus up to MAX_COLUMNS others."""
    keys = 2 if section.key == "outcomes" or section.key == "effect" else 1
    others = list(range(keys, len(section.header)))
    chunks = [others[i : i + MAX_COLUMNS] for i in range(0, len(others), MAX_COLUMNS)] or [[]]
    return [list(range(keys)) + chunk for chunk in chunks]


def _section_flowables(
    section: Section, font: str, heading: ParagraphStyle, body: ParagraphStyle
) -> list[Flowable]:
    flowables: list[Flowable] = [Paragraph(section.title, heading)]
    if not section.rows or len(section.header) < 2:
        return [KeepTogether([*flowables, Paragraph("該当なし", body)])]
    for columns in _column_chunks(section):
        data = [[section.header[i] for i in columns]]
        data += [[format_cell(row[i]) for i in columns] for row in section.rows]
        table = Table(data, repeatRows=1, hAlign="LEFT")
        table.setStyle(_table_style(font))
        flowables += [table, Spacer(1, 3 * mm)]
    return flowables


def _chart(report: Report, name: str, font_path: Path) -> Image:
    png = chart_png(report, name, font_path)
    image = Image(io.BytesIO(png))
    scale = min(250 * mm / image.drawWidth, 150 * mm / image.drawHeight)
    image.drawWidth, image.drawHeight = image.drawWidth * scale, image.drawHeight * scale
    return image


def pdf_bytes(report: Report, font_path: Path) -> bytes:
    font = register_font(font_path)
    title, heading, body = _styles(font)
    story: list[Flowable] = [
        Paragraph(report.title, title),
        Paragraph(
            f"期間 {report.start} 〜 {report.end}　作成 {report.generated_at:%Y-%m-%d %H:%M} UTC",
            heading,
        ),
    ]
    for section in report_sections(report):
        story += _section_flowables(section, font, heading, body)
    story += [
        PageBreak(),
        _chart(report, "funnel", font_path),
        _chart(report, "outcomes", font_path),
    ]
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=PAGE, leftMargin=12 * mm, rightMargin=12 * mm,
        topMargin=12 * mm, bottomMargin=12 * mm, title=report.title, author="dunning",
    )  # fmt: skip
    document.build(story)
    return buffer.getvalue()
