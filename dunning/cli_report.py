"""``dunning report daily|monthly`` (日報・月報) and ``dunning letters`` (催告書)."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from dunning.wiring import Services, open_services
from kernel.calendar import TOKYO
from kernel.errors import InvalidInput
from reports.build import daily_report, monthly_report, yesterday
from reports.fonts import find_japanese_font
from reports.letters import LetterJob, print_letters
from reports.model import Report
from reports.render import json_bytes, print_table, write_report
from reports.scheduled import report_dir

report_app = typer.Typer(help="日報・月報: daily and monthly reports.", no_args_is_help=True)
out = Console()
ACTOR = "cli"
Format = Literal["table", "csv", "xlsx", "pdf", "json"]
Encoding = Literal["cp932", "utf-8"]


def _day(text: str | None) -> date:
    if text is None:
        return yesterday(datetime.now(TOKYO).date())
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise InvalidInput(f"--date: {text!r} is not YYYY-MM-DD") from error


def _emit(
    services: Services,
    report: Report,
    fmt: Format,
    out_file: Path | None,
    encoding: Encoding | None,
) -> None:
    if fmt == "table":
        print_table(report, out)
        return
    if fmt == "json" and out_file is None:
        sys.stdout.write(json_bytes(report).decode() + "\n")
        return
    settings = services.settings.reports
    font = find_japanese_font(settings.font_path, settings.font_name) if fmt == "pdf" else None
    path = out_file or report_dir(services.settings) / f"{report.slug}.{fmt}"
    written = write_report(report, fmt, path, font=font, encoding=encoding or settings.csv_encoding)
    out.print(f"{report.title}: {written}")


FormatOption = Annotated[str, typer.Option("--format", help="table|csv|xlsx|pdf|json")]
CampaignOption = Annotated[
    list[int] | None, typer.Option("--campaign", help="Only this campaign (repeatable).")
]
OutOption = Annotated[Path | None, typer.Option("--out", help="Output file.")]
EncodingOption = Annotated[
    str | None, typer.Option("--encoding", help="CSV encoding: cp932 (default) or utf-8.")
]


def _format(value: str) -> Format:
    if value not in ("table", "csv", "xlsx", "pdf", "json"):
        raise InvalidInput(f"--format: {value!r} is not table, csv, xlsx, pdf or json")
    return value  # type: ignore[return-value]


def _encoding(value: str | None) -> Encoding | None:
    if value not in (None, "cp932", "utf-8"):
        raise InvalidInput(f"--encoding: {value!r} is not cp932 or utf-8")
    return value  # type: ignore[return-value]


@report_app.command("daily")
def daily_command(
    day: Annotated[
        str | None, typer.Option("--date", help="YYYY-MM-DD (default yesterday).")
    ] = None,
    campaign: CampaignOption = None,
    fmt: FormatOption = "table",
    out_file: OutOption = None,
    encoding: EncodingOption = None,
) -> None:
    """日報: one day's figures per campaign, per receivable kind and in total."""
    with open_services() as services:
        with services.database.read_only() as session:
            report = daily_report(session, _day(day), campaign or None)
        _emit(services, report, _format(fmt), out_file, _encoding(encoding))


@report_app.command("monthly")
def monthly_command(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM.")],
    campaign: CampaignOption = None,
    fmt: FormatOption = "table",
    out_file: OutOption = None,
    encoding: EncodingOption = None,
) -> None:
    """月報: one month's figures per campaign, per receivable kind and in total."""
    with open_services() as services:
        with services.database.read_only() as session:
            report = monthly_report(session, month, campaign or None)
        _emit(services, report, _format(fmt), out_file, _encoding(encoding))


def letters_command(
    campaign: Annotated[int, typer.Argument(help="Campaign id.")],
    follow_up: Annotated[
        bool, typer.Option("--follow-up", help="Also active targets never reached in person.")
    ] = False,
) -> None:
    """催告書: print the campaign's letters (PDF batch + manifest under var/letters/)."""
    with open_services() as services:
        settings = services.settings
        job = LetterJob.from_settings(settings, services.keyring)
        batch = print_letters(services.database, job, campaign, follow_up=follow_up, actor=ACTOR)
    if batch.letters == 0:
        out.print(f"催告 #{campaign}: 印刷対象の催告書はありません")
        return
    out.print(
        f"催告書 {batch.letters:,} 通 ({batch.pages:,} ページ) -> {batch.pdf}\n"
        f"SHA-256 {batch.sha256}  manifest {batch.manifest}"
    )
