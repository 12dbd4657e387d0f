"""``dunning wipe CAMPAIGN`` and ``dunning certificate CAMPAIGN`` (R-11).

Register both on the main app with :func:`register`. Domain errors (not exported, already
wiped, no certificate) propagate to ``dunning.cli.main``, which prints one line and exits
with the error's code.
"""

from __future__ import annotations

import getpass
import json
import re
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dialer.campaigns import STATUS_LABELS_JA
from dialer.wipe import StoredCertificate, latest_certificate, wipe_campaign
from dunning.wiring import open_services
from kernel.calendar import TOKYO
from kernel.models import CampaignStatus

out = Console()
err = Console(stderr=True)

ERASED_LABELS = {
    "persons": "対象者",
    "phones": "電話番号",
    "receivables": "債権",
    "attempts_scrubbed": "架電・送信記録 (個人項目を消去)",
    "handoffs_scrubbed": "引継 (メモを消去)",
    "callback_requests_scrubbed": "折返し依頼 (個人項目を消去)",
    "attempts_cancelled": "未実施の架電・送信 (取消)",
    "callbacks_cancelled": "未対応の折返し依頼 (取消)",
    "handoffs_closed": "未完了の引継 (終了)",
    "ivr_state_keys": "IVRセッション情報",
    "tts_files": "音声ファイル",
    "letter_files": "催告書ファイル",
    "reject_files": "取込差戻しファイル",
    "export_files": "結果出力ファイル",
    "data_keys": "暗号鍵 (破棄)",
}
METHOD_LABELS = {
    "row_deletion": "行の削除",
    "column_nulling": "個人項目の消去",
    "crypto_shredding": "暗号鍵の破棄 (クリプトシュレッディング)",
    "file_overwrite_unlink": "ファイルの上書き消去",
    "coordination_key_deletion": "共有ストアのキー削除",
    "storage_compaction": "データベース領域の再編成 (VACUUM)",
}
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_.:/\-]")


def default_actor() -> str:
    """``cli:<OS user>``, reduced to the characters the audit log accepts."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return ("cli:" + _NOT_IDENTIFIER.sub("_", user))[:64]


def _print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True))


def _tokyo(value: Any) -> str:
    """An ISO timestamp of the certificate shown in Japan time."""
    if not value:
        return "(未完了)"
    moment = datetime.fromisoformat(str(value)).astimezone(TOKYO)
    return f"{moment:%Y-%m-%d %H:%M:%S} (日本時間)"


def _status_ja(value: str) -> str:
    try:
        return STATUS_LABELS_JA[CampaignStatus(value)]
    except ValueError:
        return value


def _print_certificate(body: dict[str, Any], sha256: str, certificate_id: int) -> None:
    title = f"データ消去証明書 #{certificate_id} (催告 #{body.get('campaign_id')})"
    table = Table(title=title, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("催告名", str(body.get("campaign_name", "")))
    table.add_row("消去前の状態", _status_ja(str(body.get("from_status", ""))))
    if body.get("forced"):
        table.add_row("[red]強制消去の理由[/red]", str(body.get("forced_reason", "")))
    table.add_row("[bold]消去・処理した内容[/bold]", "")
    for key, count in body.get("erased", {}).items():
        table.add_row(f"  {ERASED_LABELS.get(key, key)}", f"{count:,} 件")
    methods = [METHOD_LABELS.get(m, m) for m in body.get("method", [])]
    table.add_row("方法", "、".join(methods))
    storage = body.get("storage", {})
    vacuum = "VACUUM FULL" if storage.get("full") else "VACUUM"
    done = "済" if storage.get("vacuumed") else "未完了"
    table.add_row("データベース", f"{storage.get('engine', '?')} ({vacuum} {done})")
    table.add_row("実施者", str(body.get("erased_by", "")))
    table.add_row("開始", _tokyo(body.get("started_at")))
    table.add_row("終了", _tokyo(body.get("finished_at")))
    out.print(table)
    out.print(f"SHA-256: {sha256}", soft_wrap=True)


def wipe_command(
    campaign: Annotated[int, typer.Argument(help="催告番号 (campaign id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the certificate as JSON.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Wipe although the results were not exported.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required with --force; audited).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who, for the certificate (default cli:USER).")
    ] = None,
) -> None:
    """消去: erase every personal value the campaign holds and issue the erasure certificate."""
    with open_services() as services:
        result = wipe_campaign(
            services.database,
            services.coordination,
            services.settings.var_dir,
            campaign,
            actor=actor or default_actor(),
            force=force,
            reason=reason,
            vacuum_full=services.settings.wipe.postgres_vacuum_full,
        )
    if as_json:
        _print_json(
            {"certificate_id": result.certificate_id, "sha256": result.sha256, "body": result.body}
        )
        return
    _print_certificate(result.body, result.sha256, result.certificate_id)


def _certificate_json(stored: StoredCertificate) -> dict[str, Any]:
    return {
        "certificate_id": stored.id,
        "issued_at": stored.issued_at.isoformat(),
        "issued_by": stored.issued_by,
        "sha256": stored.sha256,
        "intact": stored.intact,
        "body": stored.body,
    }


def certificate_command(
    campaign: Annotated[int, typer.Argument(help="催告番号 (campaign id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """消去証明書: print a wiped campaign's certificate; exit 2 if it was altered."""
    with open_services() as services:
        stored = latest_certificate(services.database, campaign)
    if as_json:
        _print_json(_certificate_json(stored))
    else:
        _print_certificate(stored.body, stored.sha256, stored.id)
        verdict = "[green]一致 (改ざんなし)[/green]" if stored.intact else "[red]不一致[/red]"
        out.print(f"SHA-256 の検証: {verdict}")
    if not stored.intact:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``wipe`` and ``certificate`` to the ``dunning`` app."""
    app.command("wipe")(wipe_command)
    app.command("certificate")(certificate_command)
