"""``dunning sync`` (import, run, exclusions) and ``dunning export results``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dunning.wiring import open_services
from kernel.calendar import TOKYO
from kernel.errors import InvalidInput
from sync import normalize
from sync.exclusions import load_exclusions, parse_as_of
from sync.importer import ImportSummary, import_file
from sync.results import export_results, load_results_layout
from sync.sources import parse_source as parse_source  # re-exported for callers and tests
from sync.sources import run_configured_sources

sync_app = typer.Typer(
    help="取込: arrears exports (CSV/TSV/fixed-width/SQL) into draft campaigns.",
    no_args_is_help=True,
)
export_app = typer.Typer(help="結果出力: results back to the arrears system.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
ACTOR = "cli"

LABELS = {
    "rows_read": "読込行数",
    "rows_loaded": "受付行数",
    "rows_rejected": "不備行数 (差戻し)",
    "persons_loaded": "対象者数",
    "receivables_loaded": "取込債権件数",
    "phones_do_not_call": "発信停止番号",
    "shared_household_phones": "世帯共用番号",
    "blank_records": "空行",
}
GROUP_LABELS = {
    "rejected_by_reason": "不備",
    "rows_excluded": "除外行",
    "persons_excluded": "除外者",
    "phones": "電話番号",
    "channels": "経路",
    "field_issues": "読み捨てた値",
}
VALUE_LABELS = {
    "dv_protected": "支援措置",
    "exclusion_list": "除外者リスト",
    "suppressed": "催告停止",
    "installment_kept": "分納履行中",
    "do_not_call": "発信停止",
    "not_due": "納期限未到来",
    "not_initial_delinquency": "初期滞納外",
    "sharing_policy": "共有方針外",
    "MOBILE": "携帯",
    "FIXED_LINE": "固定",
    "VOIP": "IP電話",
    "TOLL_FREE": "フリーダイヤル",
    "other": "その他",
    "invalid": "無効",
    "stale": "確認日超過",
    "ivr": "自動音声",
    "operator": "オペレータ",
    "letter": "文書",
}


def _as_of(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return normalize.parse_date(text)
    except normalize.NormalizationError as error:
        raise InvalidInput(f"--as-of: {error.message_ja}") from error


@contextmanager
def _progress(enabled: bool, title: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn(title), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(title, total=None)

        def update(position: int, total: int) -> None:
            progress.update(task, completed=position, total=total or None)

        yield update


def _print_summary(summary: ImportSummary) -> None:
    data = summary.to_dict()
    if summary.already_imported:
        out.print(
            f"[yellow]取込済み[/yellow]: 同じ内容 (SHA-256 {summary.file_sha256[:12]}…) は "
            f"取込 #{summary.import_id} (催告 #{summary.campaign_id}) で取り込み済みです。"
            "新たに取り込んだデータはありません。"
        )
        return
    table = Table(title=f"取込結果: {summary.source} (催告 #{summary.campaign_id})")
    table.add_column("項目")
    table.add_column("件数", justify="right")
    for key, label in LABELS.items():
        table.add_row(label, f"{data[key]:,}")
    for group, label in GROUP_LABELS.items():
        for key, value in data[group].items():
            if value:
                table.add_row(f"{label}: {VALUE_LABELS.get(key, key)}", f"{value:,}")
    out.print(table)
    if summary.unknown_columns:
        out.print(f"無視した列: {'、'.join(summary.unknown_columns)}")
    if summary.rejects_file:
        out.print(f"[red]差戻しファイル[/red]: {summary.rejects_file}")
    out.print(f"所要時間 {summary.duration_s:.1f} 秒")


def _emit(summary: ImportSummary, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        _print_summary(summary)


@sync_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV/TSV/fixed-width export file.")],
    layout: Annotated[str | None, typer.Option(help="Layout name in config/layouts.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Evaluation date (default today).")] = None,
    campaign: Annotated[int | None, typer.Option(help="Load into this draft campaign.")] = None,
    campaign_name: Annotated[str | None, typer.Option(help="Name of the new campaign.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Import one export file into a (new) draft campaign."""
    if not file.is_file():
        raise InvalidInput(f"{file}: ファイルがありません")
    with open_services() as services, _progress(not as_json, "読込中") as progress:
        summary = import_file(
            services.database,
            services.keyring,
            services.settings.sync,
            file,
            layout=layout,
            as_of=_as_of(as_of),
            campaign_id=campaign,
            campaign_name=campaign_name,
            actor=ACTOR,
            progress=progress,
        )
    _emit(summary, as_json)


@sync_app.command("run")
def run_command(
    as_of: Annotated[str | None, typer.Option(help="Evaluation date (default today).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Import every source in settings.sync.sources (each into its own draft campaign)."""
    with open_services() as services:
        settings = services.settings
        outcomes = run_configured_sources(
            services.database,
            services.keyring,
            settings.sync,
            ACTOR,
            _as_of(as_of),
            rejects_dir=settings.var_dir / "rejects",
        )
    for outcome in outcomes:
        if outcome.summary is None:
            err.print(f"[red]error[/red] {outcome.source}: {outcome.error}", highlight=False)
        elif not as_json:
            _print_summary(outcome.summary)
    if as_json:
        results = [outcome.to_dict() for outcome in outcomes]
        typer.echo(json.dumps({"sources": results}, ensure_ascii=False))
    if any(outcome.summary is None for outcome in outcomes):
        raise typer.Exit(1)


@sync_app.command("exclusions")
def exclusions_command(
    file: Annotated[Path, typer.Argument(help="除外者リスト: 宛名番号 and 理由 columns.")],
    as_of: Annotated[
        str | None, typer.Option(help="As-of time, e.g. 2026-11-24T06:00+09:00.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Replace the active exclusion list (only digests of 宛名番号 are stored)."""
    with open_services() as services:
        summary = load_exclusions(
            services.database,
            services.keyring,
            file,
            as_of=parse_as_of(as_of) if as_of else None,
            actor=ACTOR,
        )
    data = summary.__dict__ | {"as_of": summary.as_of.isoformat()}
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    out.print(
        f"除外者リスト #{summary.list_id}: {summary.entries:,} 件 (重複 {summary.duplicates} 件), "
        f"基準日時 {summary.as_of.astimezone(TOKYO):%Y-%m-%d %H:%M}, 置換 {summary.replaced} 件"
    )


@export_app.command("results")
def results_command(
    campaign: Annotated[int, typer.Argument(help="Campaign id.")],
    layout: Annotated[str | None, typer.Option(help="Results layout in config/layouts.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    per_attempt: Annotated[
        bool, typer.Option("--per-attempt", help="One line per attempt.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write the campaign's results file (CP932 CSV by default) and record the export."""
    with open_services() as services:
        stamp = datetime.now(TOKYO).strftime("%Y%m%d%H%M%S")
        default = services.settings.var_dir / "exports" / f"results_{campaign}_{stamp}.csv"
        summary = export_results(
            services.database,
            services.keyring,
            campaign,
            out_file or default,
            layout=load_results_layout(layout),
            per_attempt=per_attempt,
            actor=ACTOR,
        )
    if as_json:
        typer.echo(json.dumps(summary.__dict__, ensure_ascii=False))
        return
    out.print(
        f"結果出力 #{summary.export_id}: {summary.rows:,} 行 -> {summary.path} "
        f"(状態 {summary.status_before} -> {summary.status_after})"
    )


@sync_app.command("payments")
def payments_command(
    file: Annotated[Path, typer.Argument(help="収納データ: 宛名番号, 納付額, 納付日 columns.")],
    layout: Annotated[
        str | None, typer.Option(help="Payments layout in config/layouts (kind = payments).")
    ] = None,
    campaign: Annotated[int | None, typer.Option(help="Only this campaign.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Mark who paid since each campaign began (matched by digest) and update the effect."""
    from sync.payments import import_payments

    with open_services() as services:
        summary = import_payments(
            services.database, services.keyring, file,
            layout=layout, campaign_id=campaign, actor=ACTOR,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary.__dict__, ensure_ascii=False))
        return
    if summary.already_imported:
        out.print("[yellow]取込済み[/yellow]: 同じ内容の収納データは取り込み済みです。")
        return
    out.print(
        f"収納データ: {summary.rows_read:,} 行 (不備 {summary.rows_rejected:,}), "
        f"照合 {summary.payments_matched:,} 件, 新たに納付済 {summary.persons_marked_paid:,} 人, "
        f"催告開始前の納付 {summary.payments_before_start:,} 件, 催告 {len(summary.campaigns)} 件"
    )
