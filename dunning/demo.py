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

from dunning.wiring import Services, build_services, configure_logging, console_context
from kernel import audit, migrate
from kernel.calendar import TOKYO
from kernel.settings import Settings, load_settings
from sync.importer import ImportSummary, import_file
from sync.synthetic import write_export

console = Console()


@dataclass(frozen=True)
class DemoOptions:
    targets: int = 2000
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
    as_of = options.as_of or datetime.now(TOKYO).date()
    try:
        migrate.upgrade(services.database)
        _import_stage(services, options, as_of)
        _audit_stage(services)
    finally:
        services.close()
    console.print(f"[green]demo finished in {time.monotonic() - started:.1f} s[/green]")
    if options.serve:
        _serve(settings, options.port)


def _serve(settings: Settings, port: int) -> None:
    import uvicorn

    from agent_console.app import create_console

    services = build_services(settings)
    console.print(f"console: http://127.0.0.1:{port}/  (Ctrl+C to stop)")
    uvicorn.run(create_console(console_context(services)), host="127.0.0.1", port=port)
