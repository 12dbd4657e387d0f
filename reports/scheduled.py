"""The scheduled job: write the 日報 files of a day into ``<var_dir>/<reports.out_subdir>/``."""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.settings import Settings
from reports.build import daily_report, yesterday
from reports.fonts import find_japanese_font
from reports.render import write_report

log = logging.getLogger(__name__)


def report_dir(settings: Settings) -> Path:
    return settings.var_dir / settings.reports.out_subdir


def write_daily_reports(
    database: Database, settings: Settings, day: date | None = None, now: datetime | None = None
) -> list[Path]:
    """Write the daily report of ``day`` (default: yesterday, Asia/Tokyo) in every format of
    ``reports.daily_formats``; returns the files written. Thin: counts are logged, no PII."""
    chosen = day or yesterday((now or datetime.now(TOKYO)).astimezone(TOKYO).date())
    with database.read_only() as session:
        report = daily_report(session, chosen)
    folder = report_dir(settings)
    written = []
    for fmt in settings.reports.daily_formats:
        font = (
            find_japanese_font(settings.reports.font_path, settings.reports.font_name)
            if fmt == "pdf"
            else None
        )
        path = folder / f"{report.slug}.{fmt}"
        written.append(
            write_report(report, fmt, path, font=font, encoding=settings.reports.csv_encoding)
        )
    log.info("daily report %s: %d campaigns, %d files", chosen, len(report.campaigns), len(written))
    return written
