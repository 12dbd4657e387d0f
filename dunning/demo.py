"""``dunning demo``: the whole campaign cycle on embedded defaults, reproducible from a seed.

SQLite under ``var/``, no Redis, the simulated carrier, placeholder secrets (demo mode only).
Each stage prints what it did; the web console is served at the end unless ``--no-serve``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent_console.accounts import ensure_demo_accounts
from dialer import campaigns
from dialer.clock import SimulatedClock
from dialer.holdout import assign_holdout
from dialer.wipe import wipe_campaign
from dunning.demo_campaign import DemoCampaignRun, SimulationResult, simulation_start
from dunning.wiring import Services, build_services, configure_logging
from kernel import audit, migrate
from kernel.calendar import TOKYO
from kernel.errors import DunningError
from kernel.models import utcnow
from kernel.settings import Settings, load_settings
from reports.build import daily_report
from reports.fonts import find_japanese_font
from reports.letters import LetterJob, print_letters
from reports.render import write_report
from reports.scheduled import report_dir
from sync.exclusions import load_exclusions
from sync.importer import ImportSummary, import_file
from sync.results import export_results
from sync.synthetic import write_export

console = Console()
DEMO_HOLDOUT_SHARE = 0.05
DEMO_MAX_DAYS = 20
LIVE_TARGETS = 200


@dataclass(frozen=True)
class DemoOptions:
    targets: int = 1000
    seed: int = 7
    var_dir: Path = Path("var")
    serve: bool = True
    port: int = 8000
    as_of: date | None = None


def demo_settings(options: DemoOptions) -> Settings:
    database = options.var_dir / "demo" / "demo.sqlite3"
    return load_settings(
        environment="demo",
        database_url=f"sqlite:///{database}",
        redis_url=None,
        carrier="simulator",
        var_dir=options.var_dir,
        # The rate limiter counts real seconds while the demo's clock jumps by simulated
        # minutes: the concurrent-call limit is what paces a simulated campaign.
        dialer={"calls_per_second": 1000.0},
    )


def _fresh_database(settings: Settings) -> None:
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _stage(title: str) -> None:
    console.rule(f"[bold]{title}")


def _print_import(summary: ImportSummary) -> None:
    table = Table(title="取込結果 (import summary)", show_header=True)
    table.add_column("項目")
    table.add_column("件数", justify="right")
    data = summary.to_dict()
    for key in (
        "rows_read",
        "rows_loaded",
        "rows_rejected",
        "persons_loaded",
        "receivables_loaded",
    ):
        table.add_row(key, str(data[key]))
    for group in ("rejected_by_reason", "persons_excluded", "phones", "channels"):
        for key, value in sorted(data[group].items()):
            table.add_row(f"{group}.{key}", str(value))
    console.print(table)


def _import_stage(services: Services, options: DemoOptions, as_of: date) -> ImportSummary:
    _stage("1. 滞納システムからの抽出データ (synthetic CP932 export)")
    export_path = options.var_dir / "demo" / "arrears_export.csv"
    stats = write_export(export_path, persons=options.targets, seed=options.seed, as_of=as_of)
    console.print(f"wrote {export_path} ({stats.rows_written} rows, {stats.persons} persons)")
    _stage("2. 取込 (sync import)")
    summary = import_file(
        services.database,
        services.keyring,
        services.settings.sync,
        export_path,
        as_of=as_of,
        campaign_name=f"デモ催告 {as_of:%Y-%m}",
        actor="demo",
    )
    _print_import(summary)
    return summary


def _audit_stage(services: Services) -> None:
    _stage("監査ログ検証 (audit chain)")
    with services.database.read_only() as session:
        report = audit.verify_chain(session)
    console.print(json.dumps(report.__dict__, ensure_ascii=False))


def run_demo(options: DemoOptions) -> None:
    settings = demo_settings(options)
    configure_logging("WARNING")
    _fresh_database(settings)
    services = build_services(settings)
    started = time.monotonic()
    clock = SimulatedClock(_simulation_start(services, options))
    as_of = options.as_of or clock.now().astimezone(TOKYO).date()
    try:
        migrate.upgrade(services.database)
        summary = _import_stage(services, options, as_of)
        if summary.campaign_id is None:
            raise DunningError("the demo import created no campaign")
        campaign_id = summary.campaign_id
        _prepare_stage(services, campaign_id, clock)
        result = _dialing_stage(services, campaign_id, clock, options)
        _letters_stage(services, campaign_id)
        _results_stage(services, campaign_id, result, options)
        _reports_stage(services, campaign_id, result)
        _wipe_stage(services, campaign_id)
        _live_campaign_stage(services, options)
        _accounts_stage(services)
        _audit_stage(services)
    finally:
        services.close()
    console.print(f"[green]demo finished in {time.monotonic() - started:.1f} s[/green]")
    if options.serve:
        _serve(settings, options.port)


def _simulation_start(services: Services, options: DemoOptions) -> datetime:
    today = options.as_of or datetime.now(TOKYO).date()

    def first_open(instant: datetime) -> datetime:
        found = services.calling_window.next_open(instant)
        if found is None:
            raise DunningError("the calling window never opens: check [calling_window]")
        return found

    return simulation_start(today, first_open)


def _prepare_stage(services: Services, campaign_id: int, clock: SimulatedClock) -> None:
    _stage("3. 実施準備 (plan the first contacts, hold out 5%, start)")
    with services.database.unit_of_work() as session:
        campaign = campaigns.get_campaign(session, campaign_id)
        campaign.holdout_share = DEMO_HOLDOUT_SHARE
        held = assign_holdout(
            session, campaign_id, seed=services.settings.simulator.seed, actor="demo"
        )
        planned = campaigns.prepare(
            session, campaign_id, services.calling_window, clock.now(), "demo"
        )
        campaigns.command(session, campaign_id, "start", "demo")
    console.print(
        f"campaign {campaign_id}: {planned} first contacts planned, holdout {held.holdout}, "
        f"simulated start {clock.now().astimezone(TOKYO):%Y-%m-%d %H:%M} (Asia/Tokyo)"
    )


def _dialing_stage(
    services: Services, campaign_id: int, clock: SimulatedClock, options: DemoOptions
) -> SimulationResult:
    _stage("4. 架電・SMS (simulated carrier, IVR flow, accelerated clock)")
    run = DemoCampaignRun(
        services.settings,
        services.database,
        services.coordination,
        services.keyring,
        clock,
        options.var_dir / "demo" / "exclusions.csv",
    )
    with console.status("simulated day 1 ...") as status:

        def progress(day: date) -> None:
            status.update(f"simulated {day:%m-%d (%a)} done, dialing on ...")

        result = run.run(campaign_id, max_days=DEMO_MAX_DAYS, on_new_day=progress)
    table = Table(title="日別架電数 (IVR calls started per day)")
    table.add_column("日付")
    table.add_column("架電", justify="right")
    for day, calls in result.calls_by_day.items():
        table.add_row(f"{day:%Y-%m-%d (%a)}", str(calls))
    console.print(table)
    outcomes = Table(title="結果コード (outcomes, refusals and carrier results)")
    outcomes.add_column("コード")
    outcomes.add_column("件数", justify="right")
    for code, count in result.outcomes.most_common():
        outcomes.add_row(code, str(count))
    console.print(outcomes)
    state = "completed" if result.completed else "still running (time limit)"
    console.print(
        f"simulated {result.started.astimezone(TOKYO):%m-%d %H:%M} -> "
        f"{result.finished.astimezone(TOKYO):%m-%d %H:%M}: campaign {state}"
    )
    _print_transcripts(result)
    return result


def _print_transcripts(result: SimulationResult) -> None:
    for number, call in enumerate(result.transcripts, start=1):
        console.rule(f"通話記録 {number} (transcript; synthetic resident)")
        for line in call.lines:
            console.print(f"[bold]{line.speaker}[/bold]: {line.text}")
        console.print(f"[cyan]結果: {call.outcome or '-'}[/cyan]")


def _letters_stage(
    services: Services,
    campaign_id: int,
    title: str | None = "5. 催告書 (letters for targets without a usable phone)",
) -> None:
    if title:
        _stage(title)
    settings = services.settings
    job = LetterJob.from_settings(settings, services.keyring)
    batch = print_letters(services.database, job, campaign_id, actor="demo")
    console.print(
        f"催告書: {batch.letters} letters, {batch.pages} pages -> {batch.pdf} "
        f"(manifest {batch.manifest}); campaign data, erased with the campaign's wipe"
    )


def _results_stage(
    services: Services, campaign_id: int, result: SimulationResult, options: DemoOptions
) -> None:
    _stage("6. 結果返却 (results back to the arrears system)")
    if not result.completed:
        with services.database.unit_of_work() as session:
            cancelled = campaigns.close(session, campaign_id, "demo")
        console.print(f"closed the campaign: {cancelled} scheduled contacts cancelled")
    stamp = datetime.now(TOKYO).strftime("%Y%m%dT%H%M%S")
    out = options.var_dir / "exports" / f"results_{campaign_id}_{stamp}.csv"  # the wipe erases it
    exported = export_results(services.database, services.keyring, campaign_id, out, actor="demo")
    console.print(
        f"wrote {exported.path}: {exported.rows} rows, sha256 {exported.file_sha256[:16]}…"
    )


def _reports_stage(services: Services, campaign_id: int, result: SimulationResult) -> None:
    _stage("7. 日報 (daily report, PDF and Excel)")
    settings = services.settings
    days = list(result.calls_by_day) or [result.finished.astimezone(TOKYO).date()]
    busiest = max(days, key=lambda day: result.calls_by_day.get(day, 0))
    font = find_japanese_font(settings.reports.font_path, settings.reports.font_name)
    with services.database.read_only() as session:
        report = daily_report(session, busiest, [campaign_id])
    folder = report_dir(settings)
    for fmt in ("pdf", "xlsx"):
        path = write_report(report, fmt, folder / f"{report.slug}.{fmt}", font=font)
        console.print(f"日報 {busiest}: {path}")


def _wipe_stage(services: Services, campaign_id: int) -> None:
    _stage("8. 消去 (wipe every piece of personal data; certificate)")
    wiped = wipe_campaign(
        services.database,
        services.coordination,
        services.settings.var_dir,
        campaign_id,
        actor="demo",
    )
    console.print_json(json.dumps(wiped.body, ensure_ascii=False, default=str))
    console.print(f"certificate #{wiped.certificate_id} sha256 {wiped.sha256}")
    demo_dir = services.settings.var_dir / "demo"
    sources = sorted(demo_dir.glob("arrears_export*")) + sorted(demo_dir.glob("exclusions*"))
    for source in sources:
        source.unlink()  # the synthetic source export and its rejects held personal data too
    console.print(f"removed the demo's source files ({len(sources)}): {demo_dir}/arrears_export*")


def _live_campaign_stage(services: Services, options: DemoOptions) -> None:
    _stage("9. コンソール用の催告 (a second, running campaign for the console)")
    today = datetime.now(TOKYO).date()
    export_path = options.var_dir / "demo" / "live_export.csv"
    write_export(export_path, persons=LIVE_TARGETS, seed=options.seed + 1, as_of=today)
    summary = import_file(
        services.database,
        services.keyring,
        services.settings.sync,
        export_path,
        as_of=today,
        campaign_name=f"デモ催告 (稼働中) {today:%Y-%m}",
        actor="demo",
    )
    for source in export_path.parent.glob("live_export*"):
        source.unlink()  # the source and its rejects held personal data; the campaign has it now
    if summary.campaign_id is None:
        raise DunningError("the live demo import created no campaign")
    exclusions = options.var_dir / "demo" / "exclusions_live.csv"
    exclusions.write_text(
        f"# 基準日時: {datetime.now(TOKYO).isoformat()}\n宛名番号,理由\n99990001,支援措置\n",
        encoding="cp932",
    )
    load_exclusions(services.database, services.keyring, exclusions, actor="demo")
    exclusions.unlink()
    with services.database.unit_of_work() as session:
        planned = campaigns.prepare(
            session, summary.campaign_id, services.calling_window, utcnow(), "demo"
        )
        campaigns.command(session, summary.campaign_id, "start", "demo")
    console.print(
        f"campaign {summary.campaign_id}: {summary.persons_loaded} targets, "
        f"{planned} contacts planned, running (operators: 「次の対象者」 on the console)"
    )
    _letters_stage(services, summary.campaign_id, title=None)


def _accounts_stage(services: Services) -> None:
    _stage("10. デモ用アカウント (demo console accounts)")
    with services.database.unit_of_work() as session:
        accounts = ensure_demo_accounts(session, actor="demo")
    table = Table()
    for column in ("ユーザー", "パスワード", "役割"):
        table.add_column(column)
    for username, password, role in accounts:
        table.add_row(username, password, role)
    console.print(table)


def _serve(settings: Settings, port: int) -> None:
    import uvicorn

    from dunning.runtime import create_web_app

    services = build_services(settings)
    console.print(
        f"console: http://127.0.0.1:{port}/  (Ctrl+C to stop); the live campaign is dialed on "
        "the simulator in real time while the calling window is open"
    )
    uvicorn.run(create_web_app(services), host="127.0.0.1", port=port)
