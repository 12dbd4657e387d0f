"""Console sessions, roles and CSRF.

A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie (Secure behind
https); its record lives in the coordination store with a TTL equal to the idle timeout, so
every web process shares it and an idle session simply expires. Every state-changing form
carries the session's CSRF token, checked in constant time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from kernel.coordination import Coordination
from kernel.errors import DunningError, Forbidden
from kernel.models import Role

COOKIE = "dunning_session"
SESSION_PREFIX = "console-session:"


class LoginRequired(DunningError):
    """No valid session: the browser is sent to the login page."""

    http_status = 401


class CsrfFailure(Forbidden):
    pass


@dataclass(frozen=True)
class ConsoleUser:
    session_id: str
    user_id: int
    username: str
    display_name: str
    role: Role
    csrf_token: str
    totp_passed: bool

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


class SessionStore:
    def __init__(self, coordination: Coordination, idle_seconds: float) -> None:
        self.coordination = coordination
        self.idle_seconds = idle_seconds

    def create(
        self, user_id: int, username: str, display_name: str, role: Role, *, totp_passed: bool
    ) -> ConsoleUser:
        user = ConsoleUser(
            session_id=secrets.token_urlsafe(32),
            user_id=user_id,
            username=username,
            display_name=display_name,
            role=role,
            csrf_token=secrets.token_urlsafe(32),
            totp_passed=totp_passed,
        )
        self.save(user)
        return user

    def save(self, user: ConsoleUser) -> None:
        record = asdict(user) | {"role": user.role.value}
        self.coordination.put_state(
            SESSION_PREFIX + user.session_id, json.dumps(record), self.idle_seconds
        )

    def load(self, session_id: str) -> ConsoleUser | None:
        """The session, with its idle timer restarted; None when unknown or expired."""
        raw = self.coordination.get_state(SESSION_PREFIX + session_id)
        if raw is None:
            return None
        record = json.loads(raw)
        user = ConsoleUser(**{**record, "role": Role(record["role"])})
        self.save(user)
        return user

    def destroy(self, session_id: str) -> None:
        self.coordination.delete_state(SESSION_PREFIX + session_id)


def session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


async def current_user(request: Request) -> ConsoleUser:
    """The signed-in user (TOTP passed where required), or LoginRequired.

    Async on purpose: a sync dependency would cost a thread-pool hop on every request, more
    than the session look-up itself (a dict, or one Redis round trip)."""
    session_id = request.cookies.get(COOKIE)
    user = session_store(request).load(session_id) if session_id else None
    if user is None or not user.totp_passed:
        raise LoginRequired("ログインしてください")
    request.state.user = user
    return user


def require_roles(*roles: Role) -> Callable[..., Awaitable[ConsoleUser]]:
    """A dependency admitting only the given roles (admins are not implicitly included)."""
    allowed = frozenset(roles)

    async def dependency(
        request: Request, user: Annotated[ConsoleUser, Depends(current_user)]
    ) -> ConsoleUser:
        if user.role not in allowed:
            raise Forbidden("この画面を開く権限がありません")
        if request.method not in ("GET", "HEAD"):
            await check_csrf(request, user)
        return user

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]
    return dependency


async def check_csrf(request: Request, user: ConsoleUser) -> FormData | None:
    token = request.headers.get("x-csrf-token")
    form: FormData | None = None
    if token is None:
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    if token is None or not secrets.compare_digest(token, user.csrf_token):
        raise CsrfFailure("フォームの有効期限が切れました。画面を開き直してください (CSRF)")
    return form
