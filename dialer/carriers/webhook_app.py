"""A FastAPI application that serves the carrier's webhooks ahead of its middleware.

The webhooks are machine-to-machine: each checks the carrier's signature and its body size
itself (:class:`~dialer.carriers.twilio_webhooks.WebhookGate`), sets no cookie and renders no
page, so the console's middleware (security headers, and FastAPI's error, telemetry and body
limit layers) has nothing to add to them, yet took about a sixth of a voice webhook's CPU in
``bench/ivr_webhook.py``. :class:`WebhooksFirst` hands a request whose path is one of the
webhook routers' straight to its route (found by a dictionary look-up: the webhook paths are
fixed), and everything else to FastAPI as usual. An exception in a webhook is logged without
the request's content and answered 500, as FastAPI's error middleware would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class WebhooksFirst(FastAPI):
    """FastAPI, with ``webhooks`` routers served before its middleware stack."""

    def __init__(self, *, webhooks: Sequence[APIRouter] = (), **settings: Any) -> None:
        super().__init__(**settings)
        routes = [route for router in webhooks for route in router.routes]
        self._webhooks: dict[str, BaseRoute] = {}
        for route in routes:
            path = getattr(route, "path", None)
            if not isinstance(route, Route) or not path or "{" in path or path in self._webhooks:
                raise ValueError(f"webhook routes need one fixed path each: {route!r}")
            self._webhooks[path] = route
        self.webhook_paths = frozenset(self._webhooks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self._webhooks.get(_route_path(scope))
            if route is not None:  # Route.handle checks the method (405) and calls the app
                await _guarded(route.handle, scope, receive, send)
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


async def _guarded(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
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
