"""The carrier webhooks' requests and answers, straight on ASGI.

A webhook reads a few headers, the query and a small form body, and answers with a short
document or nothing. Starlette's ``Request``, ``Response`` and the ``request_response``
wrapper around an endpoint (its exception and send wrappers, the body stream) cost about a
tenth of a voice webhook's CPU in ``bench/ivr_webhook.py``; :class:`WebhookRequest`,
:class:`Answer` and :class:`WebhookEndpoint` do the same work without them. A
:class:`WebhookEndpoint` is an ASGI application, so it mounts as a route of any Starlette or
FastAPI router (the route still checks the method and answers 405).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send


class ClientGone(Exception):
    """The carrier closed the connection before the body was read: nothing to answer."""


class WebhookRequest:
    """An HTTP request as a webhook reads it: headers by lower-case name (the first of a
    repeated one, as Starlette's ``Headers.get``), the raw query, the body within a limit."""

    __slots__ = ("headers", "query", "_receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }
        self.query: str = scope.get("query_string", b"").decode("latin-1")
        self._receive = receive

    async def body(self, max_bytes: int) -> bytes | None:
        """The whole body; None when it is (declared or turns out) larger than ``max_bytes``.
        Raises :class:`ClientGone` when the client disconnects first."""
        declared = self.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class Answer:
    """A webhook's response: status, body and its media type."""

    status: int
    body: bytes = b""
    media_type: str | None = None

    @classmethod
    def text(cls, status: int, text: str, media_type: str = "text/plain; charset=utf-8") -> Answer:
        return cls(status, text.encode("utf-8"), media_type)

    async def send(self, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if self.body or not (self.status < 200 or self.status in (204, 304)):
            headers.append((b"content-length", str(len(self.body)).encode("latin-1")))
        if self.media_type:
            headers.append((b"content-type", self.media_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


Endpoint = Callable[[WebhookRequest], Awaitable[Answer]]


class WebhookEndpoint:
    """An ASGI application that answers each request with ``endpoint``'s :class:`Answer`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self.endpoint(WebhookRequest(scope, receive))
        except ClientGone:
            return
        await answer.send(send)
