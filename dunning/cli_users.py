"""``dunning users``: bootstrap and manage personal console accounts (R-10)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from agent_console import accounts
from dunning.wiring import build_services, configure_logging
from kernel.errors import InvalidInput
from kernel.models import Role, User
from kernel.settings import get_settings

users_app = typer.Typer(help="Console accounts: add, list, disable, reset.", no_args_is_help=True)
out = Console()
ACTOR = "cli"


def _password(given: str | None) -> str:
    if given:
        return given
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise InvalidInput("the two passwords differ")
    return first


@users_app.command("add")
def add(
    username: str,
    role: Annotated[Role, typer.Option(help="operator, staff, supervisor or admin")],
    name: Annotated[str, typer.Option(help="Display name shown in the console.")],
    password: Annotated[
        str | None, typer.Option(help="Prompted for when omitted (preferred).")
    ] = None,
) -> None:
    """Create a personal account."""
    services = build_services(get_settings())
    configure_logging(services.settings.log_level)
    try:
        with services.database.unit_of_work() as session:
            user = accounts.add_user(session, username, name, role, _password(password), ACTOR)
            out.print(f"added {user.username} ({user.role.value}), id {user.id}")
    finally:
        services.close()


@users_app.command("list")
def list_users() -> None:
    """Show every account and whether it is active."""
    services = build_services(get_settings())
    try:
        with services.database.read_only() as session:
            rows = session.scalars(select(User).order_by(User.id)).all()
            table = Table("id", "username", "name", "role", "active", "last login")
            for user in rows:
                table.add_row(
                    str(user.id),
                    user.username,
                    user.display_name,
                    user.role.value,
                    "yes" if user.active else "no",
                    str(user.last_login_at or "-"),
                )
        out.print(table)
    finally:
        services.close()


@users_app.command("disable")
def disable(username: str) -> None:
    """Disable an account (people who leave); it can no longer sign in."""
    services = build_services(get_settings())
    try:
        with services.database.unit_of_work() as session:
            accounts.disable_user(session, username, ACTOR)
        out.print(f"disabled {username}")
    finally:
        services.close()


@users_app.command("reset")
def reset(
    username: str,
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
) -> None:
    """Set a new password and clear a lockout."""
    services = build_services(get_settings())
    try:
        with services.database.unit_of_work() as session:
            accounts.reset_password(session, username, _password(password), ACTOR)
        out.print(f"password reset for {username}")
    finally:
        services.close()


@users_app.command("totp")
def totp(username: str) -> None:
    """Enroll a TOTP second factor; prints the provisioning URI once."""
    services = build_services(get_settings())
    try:
        with services.database.unit_of_work() as session:
            uri = accounts.enroll_totp(session, services.keyring, username, ACTOR)
        out.print(uri)
    finally:
        services.close()
