"""The console's ASGI application factory; errors map to HTTP in this one place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_console import (
    routes_admin,
    routes_auth,
    routes_letters,
    routes_operator,
    routes_reports,
    routes_staff,
    routes_supervisor,
)
from agent_console.context import ConsoleContext
from agent_console.i18n import LANGUAGES
from agent_console.rendering import render
from agent_console.routes_auth import HOME_BY_ROLE
from agent_console.security import COOKIE, LoginRequired, SessionStore, session_store
from dialer.carriers.webhook_app import WebhooksFirst
from kernel.errors import DunningError

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") or request.method == "GET"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, error: LoginRequired) -> Response:
        if _wants_html(request):
            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": str(error)}, status_code=401)

    @app.exception_handler(DunningError)
    async def _dunning_error(request: Request, error: DunningError) -> Response:
        if _wants_html(request) or request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            values = {"status": error.http_status, "message": str(error)}
            return render(request, "error.html", values, status_code=error.http_status)
        return JSONResponse({"error": str(error)}, status_code=error.http_status)


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every response (a plain ASGI
    wrapper, not BaseHTTPMiddleware, which costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _install_basics(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        """Signed-in users go to their role's home page, everyone else to the login."""
        session_id = request.cookies.get(COOKIE)
        user = session_store(request).load(session_id) if session_id else None
        home = HOME_BY_ROLE[user.role] if user is not None and user.totp_passed else "/login"
        return RedirectResponse(home, status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/lang/{language}", include_in_schema=False)
    async def switch_language(language: str, request: Request) -> Response:
        back = urlsplit(request.headers.get("referer", "")).path
        response = RedirectResponse(back if back.startswith("/") else "/", status_code=303)
        if language in LANGUAGES:
            response.set_cookie("lang", language, samesite="strict", httponly=True)
        return response


def create_console(ctx: ConsoleContext, first: Sequence[APIRouter] = ()) -> FastAPI:
    """Build the web console bound to one context (database, coordination, keys).

    ``first``: the carrier's webhook routers, served ahead of the console's routes and
    middleware (:class:`~dialer.carriers.webhook_app.WebhooksFirst`)."""
    app = WebhooksFirst(
        webhooks=first, title="催告コールセンター", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.ctx = ctx
    app.state.sessions = SessionStore(
        ctx.coordination, ctx.settings.console.idle_timeout_minutes * 60.0
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_basics(app)
    _install_error_handlers(app)
    modules = (routes_auth, routes_operator, routes_staff, routes_supervisor, routes_admin)
    for module in (*modules, routes_reports, routes_letters):
        app.include_router(module.router)
    return app
