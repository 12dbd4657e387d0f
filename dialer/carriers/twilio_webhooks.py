"""Twilio's webhooks: the voice flow, call status, async AMD, SMS status and inbound SMS.

:func:`twilio_router` builds one FastAPI router. Every request is checked before anything
else: a body over ``twilio.max_webhook_body_bytes`` gets 413, a missing or wrong
``X-Twilio-Signature`` gets 403; neither reaches the sink. The signature is checked against
``public_base_url`` + path + query, the URL Twilio was given, so it holds behind a proxy
(:mod:`dialer.carriers.twilio_gate`).

Form fields become :class:`~dialer.ports.CallEvent` / :class:`~dialer.ports.SmsStatusEvent` /
:class:`~dialer.ports.InboundSms` for the sink (the call session), whose answer is rendered as
TwiML. Form values hold phone numbers and what residents said: they are never logged, and the
events' ``raw`` keeps only the non-personal fields. Twilio's retries (same
``I-Twilio-Idempotency-Token``) get the first answer again without reaching the sink twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote_plus

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from dialer.call_batches import LoopBatcher, settle
from dialer.carriers import twiml
from dialer.carriers.twilio import (
    AMD_PATH,
    INBOUND_SMS_PATH,
    SMS_STATUS_PATH,
    STATUS_PATH,
    VOICE_PATH,
    TwilioCarrier,
    webhook_url,
)
from dialer.carriers.twilio_gate import Verified, WebhookGate, query_values
from dialer.carriers.webhook_asgi import Answer, WebhookEndpoint, WebhookRequest
from dialer.ports import (
    AnsweredBy,
    CallEvent,
    CallEventSink,
    CallStatus,
    InboundSms,
    SmsStatus,
    SmsStatusEvent,
)
from ivr_scripts.actions import Action
from kernel.settings import Settings

log = logging.getLogger(__name__)
R = TypeVar("R")
Offload = Callable[..., Awaitable[Any]]

XML = "text/xml; charset=utf-8"
SINK_THREADS = 8  # the sink's threads on a server database (PostgreSQL)
# Form fields that carry no personal data; only these are kept in CallEvent.raw.
SAFE_FIELDS = (
    "CallSid",
    "AccountSid",
    "CallStatus",
    "AnsweredBy",
    "CallDuration",
    "DialCallStatus",
    "ErrorCode",
    "MachineDetectionDuration",
    "Direction",
)
TRANSFER_OK = frozenset({"completed", "answered"})
FLOW_URLS_KEPT = 4096
NO_CONTENT = Answer(204)


class LiveCalls(Protocol):
    """What the webhooks need of the REST side: replace what a live call is doing."""

    def play_now(self, carrier_ref: str, twiml: str) -> None: ...


@runtime_checkable
class BatchingSink(Protocol):
    """A sink that takes call reports through a queue of its own (the call session's group
    commit) and answers each through a callback on its writer thread; the router awaits the
    answer without a thread of its own."""

    def queue_call_event(
        self, event: CallEvent, reply: Callable[[list[Action] | BaseException], None]
    ) -> None: ...


@runtime_checkable
class LoopBatchingSink(BatchingSink, Protocol):
    """A batching sink that may also handle a batch on the event loop itself, declining
    (``None``) whatever would have to wait: the call session on SQLite with in-process
    coordination (:meth:`dialer.call_session.CallSession.handle_now`)."""

    batches_inline: bool

    def handle_now(
        self, events: Sequence[CallEvent]
    ) -> Sequence[list[Action] | BaseException] | None: ...


class Step:
    """Which point of the voice flow a voice request reports (the ``ev`` query value)."""

    ANSWER = "answer"
    GATHER = "gather"
    NO_INPUT = "no-input"
    DIAL = "dial"


@functools.lru_cache(maxsize=FLOW_URLS_KEPT)
def flow_urls(public_base_url: str, attempt_key: str | None) -> twiml.FlowUrls:
    """The URLs a call's TwiML reports back to (kept for the live calls' keys: each call
    renders a document at every step)."""

    base = webhook_url(public_base_url, VOICE_PATH, attempt_key)
    joiner = "&" if attempt_key else "?"  # what webhook_url(..., ev=step) gives, built once

    def url(step: str) -> str:
        return f"{base}{joiner}ev={quote_plus(step)}"

    return twiml.FlowUrls(url(Step.GATHER), url(Step.NO_INPUT), url(Step.DIAL))


# --- form fields -> port events (pure) -------------------------------------------------


def call_status(value: str | None) -> CallStatus | None:
    try:
        return CallStatus(value) if value else None
    except ValueError:
        return None


def answered_by(value: str | None) -> AnsweredBy | None:
    """Twilio's AnsweredBy (human, machine_start, machine_end_beep, fax, unknown ...)."""
    if not value:
        return None
    if value == "human":
        return AnsweredBy.HUMAN
    if value.startswith("machine") or value == "fax":
        return AnsweredBy.MACHINE
    return AnsweredBy.UNKNOWN


def confidence(value: str | None) -> float | None:
    """Twilio's Confidence as a number in [0, 1]; garbage gives None."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    if number is None or not math.isfinite(number):
        return None
    return min(max(number, 0.0), 1.0)


def heard_with(form: dict[str, str], speech: str | None) -> float | None:
    """The confidence of ``speech``; a missing or garbled one counts as none at all (0.0).

    Speech can confirm identity (R-4), so an unreadable confidence must not pass as certain.
    """
    if speech is None:
        return None
    value = confidence(form.get("Confidence"))
    return 0.0 if value is None else value


def whole_seconds(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def safe_raw(form: dict[str, str]) -> dict[str, str]:
    return {name: form[name] for name in SAFE_FIELDS if name in form}


def voice_event(form: dict[str, str], key: str | None, step: str, now: datetime) -> CallEvent:
    """The event a voice request reports: an answer, gathered input, a timeout, a transfer."""
    status = call_status(form.get("CallStatus"))
    if step != Step.ANSWER and not (status and status.is_final):
        status = None
    digits = form.get("Digits") if step == Step.GATHER else None
    speech = form.get("SpeechResult") if step == Step.GATHER else None
    heard_nothing = step == Step.GATHER and digits is None and speech is None
    return CallEvent(
        carrier_ref=form.get("CallSid", ""),
        occurred_at=now,
        status=status,
        answered_by=answered_by(form.get("AnsweredBy")),
        digits=digits,
        speech=speech,
        speech_confidence=heard_with(form, speech),
        no_input=step == Step.NO_INPUT or heard_nothing,
        transfer_ok=form.get("DialCallStatus") in TRANSFER_OK if step == Step.DIAL else None,
        attempt_key=key,
        raw=safe_raw(form),
    )


def status_event(form: dict[str, str], key: str | None, now: datetime) -> CallEvent | None:
    """A status callback as an event; ``in-progress`` is left to the voice request (None)."""
    status = call_status(form.get("CallStatus"))
    if status is None or status is CallStatus.IN_PROGRESS:
        return None
    return CallEvent(
        carrier_ref=form.get("CallSid", ""),
        occurred_at=now,
        status=status,
        answered_by=answered_by(form.get("AnsweredBy")),
        duration_seconds=whole_seconds(form.get("CallDuration")),
        attempt_key=key,
        raw=safe_raw(form),
    )


def amd_event(form: dict[str, str], key: str | None, now: datetime) -> CallEvent | None:
    verdict = answered_by(form.get("AnsweredBy"))
    if verdict is None:
        return None
    return CallEvent(
        carrier_ref=form.get("CallSid", ""),
        occurred_at=now,
        answered_by=verdict,
        attempt_key=key,
        raw=safe_raw(form),
    )


def sms_status_event(form: dict[str, str], now: datetime) -> SmsStatusEvent | None:
    sid = form.get("MessageSid") or form.get("SmsSid")
    try:
        status = SmsStatus(form.get("MessageStatus") or form.get("SmsStatus") or "")
    except ValueError:
        return None  # sending, accepted, read ...: progress the dialer does not track
    if not sid:
        return None
    return SmsStatusEvent(sid, now, status, error_code=form.get("ErrorCode") or None)


def inbound_sms(form: dict[str, str], now: datetime) -> InboundSms | None:
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = form.get("From")
    if not sid or not sender:
        return None
    return InboundSms(sid, now, sender, form.get("Body", ""))


# --- the router ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def _inline(function: Callable[..., R], *args: object) -> R:
    return function(*args)


def sink_threads(database_url: str) -> int:
    """One thread on SQLite: it admits one writer at a time, and writers that collide wait in
    SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms (the latency of the whole queue);
    one thread hands the webhooks over in order instead. Several on a server database."""
    return 1 if database_url.startswith("sqlite") else SINK_THREADS


def sink_offload(sink_blocks: bool, threads: int = SINK_THREADS) -> Offload:
    """How the router calls the sink: on the event loop, or (``sink_blocks``) on a pool of
    ``threads`` threads of its own through ``run_in_executor``, which costs about half of
    Starlette's ``run_in_threadpool`` (anyio's limiter and cancel scopes) per call when many
    webhooks are in flight."""
    if not sink_blocks:
        return _inline
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="twilio-sink")

    async def offload(function: Callable[..., R], *args: object) -> R:
        call = functools.partial(function, *args)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    return offload


def call_reporter(
    sink: CallEventSink, offload: Offload, sink_blocks: bool
) -> Callable[[CallEvent], Awaitable[list[Action]]]:
    """How the router reports a call event: batched on the event loop when the sink can
    handle a batch there (:class:`~dialer.call_batches.LoopBatcher`), else through the sink's
    own queue when it has one, else through ``offload``."""
    if sink_blocks and isinstance(sink, LoopBatchingSink) and sink.batches_inline:
        batcher: LoopBatcher[CallEvent, list[Action]]
        batcher = LoopBatcher(sink.handle_now, sink.queue_call_event, max_batch=128)
        return batcher.submit
    if sink_blocks and isinstance(sink, BatchingSink):
        queued = sink

        async def submit(event: CallEvent) -> list[Action]:
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[list[Action]] = loop.create_future()

            def reply(result: list[Action] | BaseException) -> None:  # on the writer thread
                loop.call_soon_threadsafe(settle, answer, result)

            queued.queue_call_event(event, reply)
            return await answer

        return submit

    async def call(event: CallEvent) -> list[Action]:
        actions: list[Action] = await offload(sink.on_call_event, event)
        return actions

    return call


def twilio_router(
    sink: CallEventSink,
    settings: Settings,
    live_calls: LiveCalls | None = None,
    clock: Callable[[], datetime] = _now,
    sink_blocks: bool = True,
) -> APIRouter:
    """The Twilio webhooks, answering for ``sink``; mount it at the application root.

    ``sink_blocks``: the sink does I/O (the database-backed call session), so it runs on the
    router's own threads (:func:`sink_offload`); a sink that only computes in memory may run
    on the event loop instead.
    """
    offload = sink_offload(sink_blocks, sink_threads(settings.database_url))
    report = call_reporter(sink, offload, sink_blocks)
    live = live_calls or TwilioCarrier(settings)
    webhooks = TwilioWebhooks(sink, settings, live, clock, Calls(offload, report))
    router = APIRouter(tags=["twilio"])
    # Plain Starlette routes to ASGI endpoints (dialer.carriers.webhook_asgi): no FastAPI
    # dependency resolution (about 20 µs of CPU per webhook here), no Request/Response objects.
    for path, endpoint in (
        (VOICE_PATH, webhooks.voice),
        (STATUS_PATH, webhooks.status),
        (AMD_PATH, webhooks.amd),
        (SMS_STATUS_PATH, webhooks.sms_status),
        (INBOUND_SMS_PATH, webhooks.sms_inbound),
    ):
        asgi = WebhookEndpoint(endpoint)  # an ASGI app: the route calls it as it is
        router.routes.append(Route(path, asgi, methods=["POST"], include_in_schema=False))
    return router


@dataclass(frozen=True)
class Calls:
    """How the endpoints reach the sink: ``offload`` runs one of its methods, ``report``
    hands it a call event (see :func:`sink_offload` and :func:`call_reporter`)."""

    offload: Offload
    report: Callable[[CallEvent], Awaitable[list[Action]]]


class TwilioWebhooks:
    """The webhook endpoints: each admits the request (size, signature, replays), turns its
    form into an event for the sink and answers with TwiML or an empty response."""

    def __init__(
        self,
        sink: CallEventSink,
        settings: Settings,
        live: LiveCalls,
        clock: Callable[[], datetime],
        calls: Calls,
    ) -> None:
        self.sink, self.live, self.clock = sink, live, clock
        self.offload, self.report = calls.offload, calls.report
        self.gate = WebhookGate(settings)
        self.base = settings.public_base_url
        self.operator = settings.twilio.operator_number or settings.municipality.callback_number

    async def _admitted(self, request: WebhookRequest, path: str) -> Verified | Answer:
        verified = await self.gate.admit(request, path)
        if isinstance(verified, Verified):
            replay = self.gate.replayed(verified.replay_token)
            if replay is not None:
                return replay
        return verified

    async def voice(self, request: WebhookRequest) -> Answer:
        verified = await self._admitted(request, VOICE_PATH)
        if not isinstance(verified, Verified):
            return verified
        query = query_values(request)
        key = query.get("a")
        event = voice_event(verified.form, key, query.get("ev", Step.ANSWER), self.clock())
        actions = await self.report(event) if event.carrier_ref else []
        document = self._render(actions, key) if actions else twiml.hang_up()
        answer = Answer(200, document.encode("utf-8"), XML)
        return self.gate.remember(verified.replay_token, answer)

    def _render(self, actions: list[Action], key: str | None) -> str:
        return twiml.render(actions, flow_urls(self.base, key), self.operator)

    async def status(self, request: WebhookRequest) -> Answer:
        verified = await self._admitted(request, STATUS_PATH)
        if not isinstance(verified, Verified):
            return verified
        event = status_event(verified.form, query_values(request).get("a"), self.clock())
        if event is not None and event.carrier_ref:
            await self.report(event)
        return self.gate.remember(verified.replay_token, NO_CONTENT)

    async def amd(self, request: WebhookRequest) -> Answer:
        verified = await self._admitted(request, AMD_PATH)
        if not isinstance(verified, Verified):
            return verified
        key = query_values(request).get("a")
        event = amd_event(verified.form, key, self.clock())
        if event is not None and event.carrier_ref:
            actions = await self.report(event)
            if actions and event.answered_by is AnsweredBy.MACHINE:
                document = self._render(actions, key)
                await run_in_threadpool(self.live.play_now, event.carrier_ref, document)
        return self.gate.remember(verified.replay_token, NO_CONTENT)

    async def sms_status(self, request: WebhookRequest) -> Answer:
        verified = await self._admitted(request, SMS_STATUS_PATH)
        if not isinstance(verified, Verified):
            return verified
        event = sms_status_event(verified.form, self.clock())
        if event is not None:
            await self.offload(self.sink.on_sms_status, event)
        return self.gate.remember(verified.replay_token, NO_CONTENT)

    async def sms_inbound(self, request: WebhookRequest) -> Answer:
        verified = await self._admitted(request, INBOUND_SMS_PATH)
        if not isinstance(verified, Verified):
            return verified
        message = inbound_sms(verified.form, self.clock())
        if message is not None:
            await self.offload(self.sink.on_inbound_sms, message)
        empty = Answer(200, b'<?xml version="1.0" encoding="UTF-8"?><Response />', XML)
        return self.gate.remember(verified.replay_token, empty)
