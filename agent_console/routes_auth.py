"""Login, second factor and logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent_console.accounts import (
    LockoutPolicy,
    SignedIn,
    authenticate,
    find_user,
    verify_totp,
)
from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import (
    COOKIE,
    ConsoleUser,
    check_csrf,
    current_user,
    session_store,
)
from kernel import audit
from kernel.errors import Forbidden, NotFound
from kernel.models import Role

router = APIRouter()
HOME_BY_ROLE = {
    Role.OPERATOR: "/operator",
    Role.STAFF: "/staff",
    Role.SUPERVISOR: "/supervisor",
    Role.ADMIN: "/admin",
}
TOTP_TRIES = 5  # per user and five minutes; then the half-signed session is dropped
Ctx = Annotated[ConsoleContext, Depends(console_context)]


def _set_cookie(response: Response, ctx: ConsoleContext, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.public_base_url.startswith("https://"),
        path="/",
    )


def _sign_in(ctx: ConsoleContext, username: str, password: str) -> tuple[SignedIn, str] | Forbidden:
    """Check the credentials; a failure is counted in its own committed transaction (the
    lockout must survive the refusal), so the refusal is returned rather than raised."""
    console = ctx.settings.console
    policy = LockoutPolicy(console.lockout_threshold, console.lockout_timedelta)
    with ctx.database.unit_of_work() as session:
        try:
            signed = authenticate(session, username, password, policy, console.totp_roles)
        except Forbidden as refused:
            return refused
        user = find_user(session, signed.username)
        audit.record(
            session,
            actor=f"user:{user.id}",
            action="user.login",
            object_type="user",
            object_id=user.id,
        )
        return signed, user.display_name


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", {})


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
) -> Response:
    outcome = await run_in_threadpool(_sign_in, ctx, username.strip(), password)
    if isinstance(outcome, Forbidden):
        return render(request, "login.html", {"error": str(outcome)}, status_code=401)
    signed, display = outcome
    store = session_store(request)
    created = store.create(
        signed.user_id, signed.username, display, signed.role, totp_passed=not signed.needs_totp
    )
    target = HOME_BY_ROLE[signed.role] if created.totp_passed else "/login/totp"
    response = RedirectResponse(target, status_code=303)
    _set_cookie(response, ctx, created.session_id)
    return response


@router.get("/login/totp")
async def totp_page(request: Request) -> Response:
    return render(request, "totp.html", {})


@router.post("/login/totp")
async def totp(request: Request, ctx: Ctx, code: Annotated[str, Form(max_length=10)]) -> Response:
    store = session_store(request)
    session_id = request.cookies.get(COOKIE, "")
    pending = store.load(session_id) if session_id else None
    if pending is None:
        return RedirectResponse("/login", status_code=303)
    if not ctx.coordination.try_acquire_rate(f"totp:{pending.user_id}", TOTP_TRIES, 300.0):
        store.destroy(pending.session_id)
        return render(request, "totp.html", {"error": "試行回数が多すぎます"}, status_code=429)
    with ctx.database.read_only() as session:
        try:
            user = find_user(session, pending.username)
        except NotFound:
            user = None
        ok = user is not None and verify_totp(ctx.keyring, user, code)
    if not ok:
        return render(request, "totp.html", {"error": "確認コードが違います"}, status_code=401)
    store.destroy(pending.session_id)
    fresh = store.create(
        pending.user_id, pending.username, pending.display_name, pending.role, totp_passed=True
    )
    response = RedirectResponse(HOME_BY_ROLE[fresh.role], status_code=303)
    _set_cookie(response, ctx, fresh.session_id)
    return response


@router.post("/logout")
async def logout(request: Request, user: Annotated[ConsoleUser, Depends(current_user)]) -> Response:
    await check_csrf(request, user)
    session_store(request).destroy(user.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
