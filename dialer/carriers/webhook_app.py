"""A FastAPI application that serves the carrier's webhooks ahead of its middleware.

The webhooks are machine-to-machine: each checks the carrier's signature and its body size
itself (:class:`~dialer.carriers.twilio_webhooks.WebhookGate`), sets no cookie and renders no
page, so the console's middleware (security headers, and FastAPI's error, telemetry and body
limit layers) has nothing to add to them, yet took about a sixth of a voice webhook's CPU in
``bench/ivr_webhook.py``. :class:`WebhooksFirst` hands a request whose path is one of the
webhook routers' straight to those routes (a bare Starlette router), and everything else to
FastAPI as usual. An exception in a webhook is logged without the request's content and
answered 500, as FastAPI's error middleware would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Router
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class WebhooksFirst(FastAPI):
    """FastAPI, with ``webhooks`` routers served before its middleware stack."""

    def __init__(self, *, webhooks: Sequence[APIRouter] = (), **settings: Any) -> None:
        super().__init__(**settings)
        routes: list[BaseRoute] = [route for router in webhooks for route in router.routes]
        self.webhook_paths = frozenset(getattr(route, "path", "") for route in routes)
        self._webhooks = Router(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) in self.webhook_paths:
            await _guarded(self._webhooks, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the routes match: without the root path a proxy mounts the app under (in
    ASGI, ``path`` includes ``root_path``), as Starlette's routing reads it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


async def _guarded(app: Router, scope: Scope, receive: Receive, send: Send) -> None:
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        await app(scope, receive, sending)
    except Exception:
        log.exception("webhook %s failed", scope["path"])  # the path holds no personal data
        if not started:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})
