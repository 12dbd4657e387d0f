"""``dunning campaign`` (create, list, show, ready, start, pause, resume, close) and the
``dunning worker`` command that runs only the dialer."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from dialer import campaigns
from dialer.holdout import assign_holdout
from dunning.wiring import open_services
from kernel.calendar import TOKYO
from kernel.errors import Conflict
from kernel.models import Campaign
from sync.importer import import_file

campaign_app = typer.Typer(
    help="催告: campaigns (create from an import, plan, start, pause, resume, close).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)
ACTOR = "cli"
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
CampaignId = Annotated[int, typer.Argument(help="Campaign id (see `dunning campaign list`).")]
HoldoutOption = Annotated[
    float | None,
    typer.Option(
        "--holdout",
        help="保留群: share of targets set aside at random, never contacted (0 <= SHARE < 0.5), "
        "to measure the campaign's effect.",
    ),
]
HoldoutSeed = Annotated[
    int | None, typer.Option("--holdout-seed", help="Seed of the holdout draw (default random).")
]
HOLDOUT_LIMIT = 0.5

CHANNEL_JA = {"ivr": "自動音声", "sms": "SMS", "operator": "オペレータ", "letter": "文書"}
STATUS_JA = {
    "scheduled": "予定",
    "claimed": "確保",
    "in_progress": "通話中",
    "completed": "完了",
    "refused": "送信不可",
    "cancelled": "取消",
}


def _now() -> datetime:
    return datetime.now(UTC)


@campaign_app.command("create")
def create(
    path: Annotated[Path, typer.Argument(help="The arrears export (CSV/TSV/fixed-width).")],
    name: Annotated[str | None, typer.Option(help="Campaign name (催告名).")] = None,
    layout: Annotated[str | None, typer.Option(help="Column layout name or file.")] = None,
    as_of: Annotated[str | None, typer.Option(help="基準日 YYYY-MM-DD (default today).")] = None,
    holdout: HoldoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a draft campaign from an arrears export (the sync import)."""
    _check_share(holdout)
    with open_services() as svc:
        summary = import_file(
            svc.database,
            svc.keyring,
            svc.settings.sync,
            path,
            layout=layout,
            as_of=date.fromisoformat(as_of) if as_of else None,
            campaign_name=name,
            actor=ACTOR,
        )
        if holdout is not None and summary.campaign_id is not None:
            with svc.database.unit_of_work() as session:
                _set_share(session, summary.campaign_id, holdout)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
        return
    if summary.already_imported:
        out.print(f"取込済み: 催告 #{summary.campaign_id} に同じ内容が取り込まれています。")
        return
    cid = summary.campaign_id
    out.print(
        f"催告 #{cid} を下書きで作成しました: 対象者 {summary.persons_loaded:,} 人、"
        f"不備 {summary.rows_rejected:,} 行。次に `dunning campaign ready {cid}`。"
    )


@campaign_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """All campaigns with their status and attempt counts."""
    with open_services() as svc, svc.database.read_only() as session:
        rows = campaigns.list_campaigns(session)
    if as_json:
        data = [
            {**row.__dict__, "status": row.status.value, "status_ja": row.status_ja} for row in rows
        ]
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    table = Table(title="催告一覧")
    for column in ("番号", "名称", "状態", "対象者", "未了", "完了"):
        table.add_column(
            column, justify="right" if column in ("対象者", "未了", "完了") else "left"
        )
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            row.status_ja,
            f"{row.targets:,}",
            f"{row.attempts_open:,}",
            f"{row.attempts_done:,}",
        )
    out.print(table)


@campaign_app.command("show")
def show(campaign_id: CampaignId, as_json: JsonOption = False) -> None:
    """One campaign: status, dates, attempts by channel and status, refusals by reason."""
    with open_services() as svc, svc.database.read_only() as session:
        campaign = campaigns.get_campaign(session, campaign_id)
        view = campaigns.overview(session, campaign)
        counts = campaigns.attempt_counts(session, campaign_id)
        dates = {
            key: (value.astimezone(TOKYO).isoformat(timespec="minutes") if value else None)
            for key, value in (
                ("created_at", campaign.created_at),
                ("started_at", campaign.started_at),
                ("completed_at", campaign.completed_at),
            )
        }
    if as_json:
        data = {**view.__dict__, "status": view.status.value, **dates, "attempts": counts}
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    out.print(f"催告 #{view.id} {view.name}: {view.status_ja} / 対象者 {view.targets:,} 人")
    out.print(f"作成 {dates['created_at']}  開始 {dates['started_at'] or '-'}")
    refusals = counts.pop("refused_by_reason", {})
    table = Table(title="接触の状況")
    table.add_column("経路")
    for status_ja in STATUS_JA.values():
        table.add_column(status_ja, justify="right")
    for channel, by_status in sorted(counts.items()):
        cells = [f"{by_status.get(status, 0):,}" for status in STATUS_JA]
        table.add_row(CHANNEL_JA.get(channel, channel), *cells)
    out.print(table)
    if refusals:
        out.print("送信不可の理由: " + "、".join(f"{k} {v:,}" for k, v in sorted(refusals.items())))


def _check_share(share: float | None) -> None:
    if share is not None and not 0.0 <= share < HOLDOUT_LIMIT:
        raise typer.BadParameter(
            f"保留群の割合は 0 以上 {HOLDOUT_LIMIT} 未満です (got {share})", param_hint="--holdout"
        )


def _set_share(session: Session, campaign_id: int, share: float) -> Campaign:
    campaign = campaigns.get_campaign(session, campaign_id)
    campaign.holdout_share = share
    return campaign


def _hold_out(session: Session, campaign_id: int, share: float | None, seed: int | None) -> int:
    """Set the share (when given) and draw the holdout once, before any contact is planned;
    returns how many targets were set aside (0 when the campaign has no holdout)."""
    campaign = campaigns.get_campaign(session, campaign_id)
    if share is not None:
        if campaign.holdout_assigned_at is not None:
            raise Conflict(f"催告 #{campaign_id}: 保留群は設定済みのため変更できません")
        campaign.holdout_share = share
    if campaign.holdout_share <= 0 or campaign.holdout_assigned_at is not None:
        return 0
    return assign_holdout(session, campaign_id, seed=seed, actor=ACTOR, now=_now()).holdout


@campaign_app.command("ready")
def ready(
    campaign_id: CampaignId,
    holdout: HoldoutOption = None,
    holdout_seed: HoldoutSeed = None,
    as_json: JsonOption = False,
) -> None:
    """draft -> ready: set aside the holdout (if any), then plan every other target's first
    contact inside the calling window."""
    _check_share(holdout)
    with open_services() as svc, svc.database.unit_of_work() as session:
        held = _hold_out(session, campaign_id, holdout, holdout_seed)
        created = campaigns.prepare(session, campaign_id, svc.calling_window, _now(), ACTOR)
    label = f"初回接触 {created:,} 件を計画 (保留群 {held:,} 人)"
    _report(as_json, campaign_id, "ready", {"attempts": created, "holdout": held}, label)


def _transition(verb: str, label: str) -> Callable[[int, bool], None]:
    def run(campaign_id: CampaignId, as_json: JsonOption = False) -> None:
        with open_services() as svc, svc.database.unit_of_work() as session:
            campaign = campaigns.command(session, campaign_id, verb, ACTOR)
            status = campaign.status
        _report(as_json, campaign_id, status.value, {}, label)

    run.__doc__ = f"{verb} the campaign ({label})."
    return run


campaign_app.command("start")(_transition("start", "発信を開始しました"))
campaign_app.command("pause")(_transition("pause", "発信を一時停止しました"))
campaign_app.command("resume")(_transition("resume", "発信を再開しました"))


@campaign_app.command("close")
def close(campaign_id: CampaignId, as_json: JsonOption = False) -> None:
    """running/paused -> completed: what is still only scheduled is cancelled."""
    with open_services() as svc, svc.database.unit_of_work() as session:
        cancelled = campaigns.close(session, campaign_id, ACTOR)
    label = f"完了にしました (未実施 {cancelled:,} 件を取消)"
    _report(as_json, campaign_id, "completed", {"cancelled": cancelled}, label)


def _report(as_json: bool, campaign_id: int, status: str, extra: dict[str, int], ja: str) -> None:
    if as_json:
        typer.echo(json.dumps({"campaign_id": campaign_id, "status": status, **extra}))
    else:
        out.print(f"催告 #{campaign_id}: {ja}")


# --------------------------------------------------------------------------- the worker


def worker(
    worker_name: Annotated[
        str | None, typer.Option("--name", help="Worker id shown in claimed attempts.")
    ] = None,
) -> None:
    """Run only the dialer (calls, SMS, reconciliation, completion) until interrupted.

    Several workers on several machines share campaigns through PostgreSQL and Redis; the
    nightly sync, the daily report and the wipe run in ``dunning serve`` only."""
    from dunning.runtime import build_runtime

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open_services() as svc:
        runtime = build_runtime(svc, platform=False, worker=worker_name)
        runtime.start()
        err.print(f"dialer worker {runtime.dialer.calls.config.worker_id} 稼働中 (Ctrl-C で停止)")
        try:
            stop.wait()
        finally:
            runtime.stop()
