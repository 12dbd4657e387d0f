"""WebhooksFirst: webhook paths go to their routes ahead of the middleware; the rest is
FastAPI as usual; a failing webhook is answered 500 and logged without its content."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, Request, Response
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dialer.carriers.webhook_app import WebhooksFirst


class Marking:
    """A middleware that marks every response it sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-marked", b"1")]
            await send(message)

        await self.app(scope, receive, marked)


def _app() -> WebhooksFirst:
    hooks = APIRouter()

    async def echo(request: Request) -> Response:
        return Response((await request.body()).upper(), media_type="text/plain")

    async def broken(request: Request) -> Response:
        raise RuntimeError("the sink is down")

    hooks.add_route("/hooks/echo", echo, methods=["POST"])
    hooks.add_route("/hooks/broken", broken, methods=["POST"])
    app = WebhooksFirst(webhooks=[hooks])
    app.add_middleware(Marking)

    @app.get("/page")
    async def page() -> dict[str, str]:
        return {"page": "yes"}

    return app


def test_webhook_paths_skip_the_middleware_and_the_rest_does_not() -> None:
    with TestClient(_app()) as client:
        hook = client.post("/hooks/echo", content=b"digits=1")
        page = client.get("/page")
    assert (hook.status_code, hook.text) == (200, "DIGITS=1")
    assert "x-marked" not in hook.headers
    assert page.json() == {"page": "yes"}
    assert page.headers["x-marked"] == "1"


def test_a_webhook_with_the_wrong_method_gets_405() -> None:
    with TestClient(_app()) as client:
        assert client.get("/hooks/echo").status_code == 405
        assert client.get("/hooks/unknown").status_code == 404  # not a webhook: FastAPI's 404


def test_a_failing_webhook_is_answered_500_and_logged_without_its_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR), TestClient(_app()) as client:
        answer = client.post("/hooks/broken", content=b"From=%2B819012345678")
    assert answer.status_code == 500
    assert "webhook /hooks/broken failed" in caplog.text
    assert "819012345678" not in caplog.text


def test_webhooks_are_found_under_a_proxys_root_path() -> None:
    with TestClient(_app(), root_path="/dunning") as client:
        hook = client.post("/dunning/hooks/echo", content=b"a")
        page = client.get("/dunning/page")
    assert (hook.status_code, hook.text, "x-marked" in hook.headers) == (200, "A", False)
    assert page.json() == {"page": "yes"}


@pytest.mark.parametrize("path", ["/hooks/{call_id}", "/hooks/echo"])
def test_webhook_routes_need_one_fixed_path_each(path: str) -> None:
    hooks = APIRouter()

    async def echo(request: Request) -> Response:
        return Response(b"")

    hooks.add_route("/hooks/echo", echo, methods=["POST"])
    other = APIRouter()
    other.add_route(path, echo, methods=["POST"])
    with pytest.raises(ValueError, match="one fixed path each"):
        WebhooksFirst(webhooks=[hooks, other])
