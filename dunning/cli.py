"""The ``dunning`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dunning.cli_campaign import campaign_app, worker
from dunning.cli_report import letters_command, report_app
from dunning.cli_sync import export_app, sync_app
from dunning.cli_users import users_app
from dunning.cli_wipe import register as register_wipe
from dunning.wiring import Services, build_services, configure_logging
from kernel import audit, migrate
from kernel.errors import DunningError
from kernel.settings import Settings, get_settings

app = typer.Typer(
    help="催告コールセンター: municipal arrears dunning by IVR, SMS and operators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
app.add_typer(sync_app, name="sync")
app.add_typer(export_app, name="export")
app.add_typer(report_app, name="report")
app.command("letters")(letters_command)
register_wipe(app)
app.add_typer(campaign_app, name="campaign")
app.command("worker")(worker)

out = Console()
err = Console(stderr=True)


def services(settings: Settings | None = None) -> Services:
    chosen = settings or get_settings()
    configure_logging(chosen.log_level)
    return build_services(chosen)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from DUNNING_DATABASE_URL)."""
    svc = services()
    try:
        migrate.upgrade(svc.database, revision)
        out.print(f"database at revision {migrate.current_revision(svc.database)}")
    finally:
        svc.close()


@db_app.command("current")
def db_current() -> None:
    """Show the database's current migration revision and the latest one."""
    svc = services()
    try:
        current = migrate.current_revision(svc.database)
        out.print(f"current: {current or '(empty)'}  head: {migrate.head_revision()}")
    finally:
        svc.close()


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recompute the audit chain; exit 2 and name the first bad event if it was tampered with."""
    svc = services()
    try:
        with svc.database.read_only() as session:
            report = audit.verify_chain(session)
    finally:
        svc.close()
    if as_json:
        out.print_json(json.dumps(report.__dict__))
    elif report.ok:
        out.print(f"監査ログ正常: {report.events_checked} 件, head {report.head_hash}")
    else:
        err.print(
            f"[red]監査ログ改ざん検知[/red]: event {report.first_bad_id}: {report.problem} "
            f"({report.events_checked} 件目)"
        )
    if not report.ok:
        raise typer.Exit(2)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the web console (and, once campaigns exist, the scheduler)."""
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run("dunning.app:create_app", factory=True, host=host, port=port, log_level="info")


@app.command("demo")
def demo(
    targets: Annotated[int, typer.Option(help="Persons in the synthetic export.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 7,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Exit when the demo is done.")
    ] = False,
    var_dir: Annotated[Path, typer.Option(help="Where the demo writes its files.")] = Path("var"),
    port: Annotated[int, typer.Option(help="Port for the web console.")] = 8000,
) -> None:
    """Run a whole demo campaign on embedded defaults (SQLite, no Redis, simulated carrier)."""
    from dunning.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(targets=targets, seed=seed, var_dir=var_dir, serve=not no_serve, port=port)
    )


def main() -> None:
    """Console-script entry point: domain errors become one clear line and an exit code."""
    try:
        app()
    except DunningError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(error.exit_code)
