"""The webhooks' ASGI requests and answers, driven with the ASGI messages a server sends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from starlette.types import Message

from dialer.carriers.webhook_asgi import Answer, WebhookEndpoint, WebhookRequest

LIMIT = 16


def _scope(headers: Sequence[tuple[bytes, bytes]] = (), query: bytes = b"") -> dict[str, object]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/hook",
        "query_string": query,
        "headers": list(headers),
    }


def _run(
    messages: list[Message], headers: Sequence[tuple[bytes, bytes]] = (), query: bytes = b""
) -> tuple[list[Message], list[object]]:
    """Serves one request to an endpoint that echoes what it read; returns what it sent."""
    seen: list[object] = []
    sent: list[Message] = []

    async def echo(request: WebhookRequest) -> Answer:
        body = await request.body(LIMIT)
        seen.extend([request.headers, request.query, body])
        if body is None:
            return Answer.text(413, "too large")
        return Answer(200, body.upper(), "text/plain")

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(WebhookEndpoint(echo)(_scope(headers, query), receive, send))
    return sent, seen


def _body(chunk: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": chunk, "more_body": more}


def test_a_body_in_chunks_is_read_whole_and_answered() -> None:
    sent, seen = _run([_body(b"digits", True), _body(b"=1")], query=b"a=k-1&ev=gather")
    assert seen[1:] == ["a=k-1&ev=gather", b"digits=1"]
    start, body = sent
    assert start["status"] == 200
    assert dict(start["headers"]) == {b"content-length": b"8", b"content-type": b"text/plain"}
    assert body == {"type": "http.response.body", "body": b"DIGITS=1"}


def test_headers_are_read_by_lower_case_name_the_first_of_a_repeated_one() -> None:
    headers = [(b"x-twilio-signature", b"first"), (b"x-twilio-signature", b"second")]
    _, seen = _run([_body(b"")], headers=headers)
    assert seen[0] == {"x-twilio-signature": "first"}


@pytest.mark.parametrize(
    ("declared", "chunks"),
    [
        (b"17", [_body(b"x" * 17)]),  # declared too large: not read at all
        (b"many", [_body(b"x")]),  # not a length
        (None, [_body(b"x" * 10, True), _body(b"x" * 10)]),  # chunked, too large in total
    ],
)
def test_a_body_over_the_limit_is_refused(declared: bytes | None, chunks: list[Message]) -> None:
    headers = [(b"content-length", declared)] if declared is not None else []
    sent, seen = _run(chunks, headers=headers)
    assert seen[2] is None and sent[0]["status"] == 413


def test_a_client_that_disconnects_gets_nothing() -> None:
    sent, seen = _run([_body(b"half", True), {"type": "http.disconnect"}])
    assert sent == [] and seen == []


def test_an_empty_answer_has_no_length_only_where_http_says_so() -> None:
    assert _headers(Answer(204)) == {}
    assert _headers(Answer(200)) == {b"content-length": b"0"}
    assert _headers(Answer.text(403, "invalid signature")) == {
        b"content-length": b"17",
        b"content-type": b"text/plain; charset=utf-8",
    }


def _headers(answer: Answer) -> dict[bytes, bytes]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(answer.send(send))
    return dict(sent[0]["headers"])
