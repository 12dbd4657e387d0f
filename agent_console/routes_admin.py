"""Admins: personal accounts (same services as ``dunning users``) and the audit chain."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from agent_console import accounts
from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import ConsoleUser, require_roles
from kernel import audit
from kernel.models import AuditEvent, Role, User

router = APIRouter(prefix="/admin")
Ctx = Annotated[ConsoleContext, Depends(console_context)]
Admin = Annotated[ConsoleUser, Depends(require_roles(Role.ADMIN))]
AUDIT_PAGE = 100


def new_password() -> str:
    """A random initial password to hand over once (the user should change it)."""
    return secrets.token_urlsafe(12)


async def _users_page(
    request: Request, ctx: ConsoleContext, message: str = "", secret: str = ""
) -> Response:
    def load() -> list[User]:
        with ctx.database.read_only() as session:
            return list(session.scalars(select(User).order_by(User.id)))

    users = await run_in_threadpool(load)
    values = {"users": users, "roles": list(Role), "message": message, "secret": secret}
    return render(request, "admin_users.html", values)


@router.get("")
async def users_page(request: Request, ctx: Ctx, user: Admin) -> Response:
    return await _users_page(request, ctx)


@router.post("/users")
async def add(
    request: Request,
    ctx: Ctx,
    user: Admin,
    username: Annotated[str, Form(max_length=64)],
    display_name: Annotated[str, Form(max_length=100)],
    role: Annotated[Role, Form()],
) -> Response:
    password = new_password()

    def store() -> None:
        with ctx.database.unit_of_work() as session:
            accounts.add_user(
                session, username.strip(), display_name.strip(), role, password, user.actor
            )

    await run_in_threadpool(store)
    return await _users_page(request, ctx, f"added {username}", password)


@router.post("/users/{username}/disable")
async def disable(request: Request, ctx: Ctx, user: Admin, username: str) -> Response:
    def store() -> None:
        with ctx.database.unit_of_work() as session:
            accounts.disable_user(session, username, user.actor)

    await run_in_threadpool(store)
    return await _users_page(request, ctx, f"disabled {username}")


@router.post("/users/{username}/reset")
async def reset(request: Request, ctx: Ctx, user: Admin, username: str) -> Response:
    password = new_password()

    def store() -> None:
        with ctx.database.unit_of_work() as session:
            accounts.reset_password(session, username, password, user.actor)

    await run_in_threadpool(store)
    return await _users_page(request, ctx, f"password reset for {username}", password)


@router.get("/audit")
async def audit_page(request: Request, ctx: Ctx, user: Admin) -> Response:
    before = request.query_params.get("before", "")

    def load() -> tuple[audit.ChainReport | None, list[AuditEvent]]:
        with ctx.database.read_only() as session:
            query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(AUDIT_PAGE)
            if before.isdigit():
                query = query.where(AuditEvent.id < int(before))
            events = list(session.scalars(query))
            report = audit.verify_chain(session) if request.query_params.get("verify") else None
        return report, events

    report, events = await run_in_threadpool(load)
    return render(request, "admin_audit.html", {"report": report, "events": events})
