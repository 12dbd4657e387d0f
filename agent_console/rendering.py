"""Server-rendered pages (Jinja2, autoescaped) with the user, CSRF token and language."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from agent_console.i18n import LANGUAGES, translator
from kernel.calendar import TOKYO

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
TEMPLATES.env.auto_reload = False  # templates ship with the code; no stat() per render


def local_time(instant: datetime, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """Stored instants are UTC; people read Japan time."""
    return instant.astimezone(TOKYO).strftime(pattern)


TEMPLATES.env.filters["local"] = local_time


def language_of(request: Request) -> str:
    chosen = request.cookies.get("lang", "")
    if chosen in LANGUAGES:
        return chosen
    return str(request.app.state.ctx.settings.console.language)


def render(
    request: Request, template: str, values: dict[str, Any], *, status_code: int = 200
) -> Response:
    language = language_of(request)
    settings = request.app.state.ctx.settings
    user = getattr(request.state, "user", None)
    context = {
        "t": translator(language),
        "label": lambda pair: pair[1] if language == "en" else pair[0],
        "lang": language,
        "user": user,
        "csrf_token": user.csrf_token if user else "",
        "municipality": settings.municipality,
        "demo": settings.is_demo,
        **values,
    }
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
