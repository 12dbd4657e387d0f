"""The built-in simulated carrier: a real :class:`~dialer.ports.Carrier` with no telephony.

Each placed call gets its own :class:`random.Random` derived from the carrier's seed and the
attempt's idempotency key, and a :class:`~dialer.residents.Resident` that decides how the phone
is answered and what is pressed or said at every gather. The call's reports are put on a
simulated timeline as the same :class:`~dialer.ports.CallEvent` shapes Twilio sends (initiated,
ringing, in-progress with ``answered_by``, completed / busy / no-answer with a duration) and are
handed to the sink when their time comes; the actions the sink answers with (say, gather,
transfer, hang up) decide what is scheduled next.

Time is read only through a :class:`~dialer.clock.Clock`. Two ways to run:

* event-driven (tests, the dispatcher's fast campaign run): call :meth:`run_until` with an
  instant, or :meth:`next_due` then ``clock.set(...)`` and :meth:`run_due`, to deliver due
  reports. A whole campaign over several simulated days runs in seconds.
* real time (``dunning serve``): :meth:`start` runs a daemon thread that delivers reports when
  the (possibly accelerated) clock reaches them; :meth:`stop` ends it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import ivr_scripts.actions as act
from dialer.clock import Clock
from dialer.ports import (
    AnsweredBy,
    CallEvent,
    CallEventSink,
    CallHandle,
    CallRequest,
    CallStatus,
    Capabilities,
    InboundSms,
    SmsHandle,
    SmsRequest,
    SmsStatus,
    SmsStatusEvent,
)
from dialer.residents import (
    Keys,
    PickUp,
    PutsDown,
    Resident,
    ResidentModel,
    Response,
    Says,
    StaysSilent,
    line_kind,
)
from kernel.models.enums import PhoneKind
from kernel.settings import SimulatorSettings

log = logging.getLogger(__name__)

NAME = "simulator"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
SPOKEN_CHARS_PER_SECOND = 8.0  # Japanese text-to-speech, roughly
TRANSFER_OK_SHARE = 0.9
OPERATOR_TALK_SECONDS = (90.0, 600.0)
OPT_OUT_REPLY_SHARE = 0.02  # residents who answer an SMS with 停止
ResidentFactory = Callable[[random.Random, datetime, CallRequest], Resident]


def call_rng(seed: int, idempotency_key: str) -> random.Random:
    """The call's own random stream: the same for the same seed and attempt, in any order."""
    return random.Random(f"{seed}:{idempotency_key}")


def spoken_seconds(text: str) -> float:
    return max(1.0, len(text) / SPOKEN_CHARS_PER_SECOND)


@dataclass
class _Call:
    request: CallRequest
    ref: str
    rng: random.Random
    resident: Resident
    pick_up: PickUp
    placed_at: datetime
    answered_at: datetime | None = None
    bridged: bool = False
    ended: bool = False


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    run: Callable[[], None] = field(compare=False)


class SimulatedCarrier:
    """A carrier whose residents are simulated; deterministic for a seed."""

    name = NAME

    def __init__(
        self,
        sink: CallEventSink,
        *,
        clock: Clock,
        seed: int,
        residents: ResidentFactory | None = None,
        sms_delivered_share: float = 0.95,
        speedup: float = 1.0,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._seed = seed
        model = ResidentModel()
        self._residents = residents or (lambda rng, at, req: model.resident(rng, at, req.to_e164))
        self._sms_delivered_share = sms_delivered_share
        self._speedup = speedup
        self._lock = threading.RLock()
        self._timeline: list[_Due] = []
        self._seq = itertools.count()
        self._calls: dict[str, _Call] = {}
        self._sms: dict[str, SmsHandle] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_settings(
        cls, sink: CallEventSink, settings: SimulatorSettings, clock: Clock
    ) -> SimulatedCarrier:
        """The carrier as ``[simulator]`` configures it (seed, speedup, SMS delivery share)."""
        return cls(
            sink,
            clock=clock,
            seed=settings.seed,
            sms_delivered_share=settings.sms_delivered_share,
            speedup=settings.speedup,
        )

    # ------------------------------------------------------------------ the Carrier port

    def capabilities(self) -> Capabilities:
        return Capabilities(
            voice=True,
            sms=True,
            click_to_call=False,
            answering_machine_detection=True,
            speech_input=True,
            max_calls_per_second=1000.0,
        )

    def place_call(self, request: CallRequest) -> CallHandle:
        if not E164.fullmatch(request.to_e164):
            return CallHandle(False, NAME, error_code="invalid_number", error_message="not E.164")
        ref = self._ref("CA", request.idempotency_key)
        with self._lock:
            if ref in self._calls:  # the same attempt placed twice: one call only
                return CallHandle(True, NAME, carrier_ref=ref)
            now = self._clock.now()
            rng = call_rng(self._seed, request.idempotency_key)
            resident = self._residents(rng, now, request)
            pick_up = resident.pick_up(float(request.ring_timeout_seconds))
            call = _Call(request, ref, rng, resident, pick_up, now)
            self._calls[ref] = call
            self._schedule_dialing(call)
        return CallHandle(True, NAME, carrier_ref=ref)

    def hang_up(self, carrier_ref: str) -> None:
        with self._lock:
            call = self._calls.get(carrier_ref)
            if call is None or call.ended:
                return
            status = CallStatus.COMPLETED if call.answered_at else CallStatus.CANCELED
            self._finish(call, self._clock.now(), status)

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        if line_kind(request.to_e164) is not PhoneKind.MOBILE:
            return SmsHandle(
                False, NAME, error_code="not_mobile", error_message="SMS: mobiles only"
            )
        ref = self._ref("SM", request.idempotency_key)
        with self._lock:
            known = self._sms.get(ref)
            if known is not None:
                return known
            handle = SmsHandle(True, NAME, carrier_ref=ref)
            self._sms[ref] = handle
            self._schedule_sms(request, ref, self._clock.now())
        return handle

    def active_calls(self) -> list[str]:
        with self._lock:
            return [ref for ref, call in self._calls.items() if not call.ended]

    # ------------------------------------------------------------------ running the timeline

    def next_due(self) -> datetime | None:
        """When the next report is due, or None when nothing is pending."""
        with self._lock:
            return self._timeline[0].at if self._timeline else None

    def run_due(self) -> int:
        """Deliver every report due at the clock's current time; returns how many ran."""
        return self.run_until(self._clock.now())

    def run_until(self, instant: datetime) -> int:
        """Deliver, in time order, every report due at or before ``instant``."""
        ran = 0
        with self._lock:
            while self._timeline and self._timeline[0].at <= instant:
                heapq.heappop(self._timeline).run()
                ran += 1
        return ran

    def run_all(self, limit: int = 1_000_000) -> int:
        """Deliver everything pending, whatever its time (a frozen clock is not consulted)."""
        ran = 0
        while ran < limit and (due := self.next_due()) is not None:
            ran += self.run_until(due)
        return ran

    def start(self) -> None:
        """Deliver reports in a background thread as the clock reaches them (real time)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="simulated-carrier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_due()
            except Exception:  # one broken report must not stop every other call
                log.exception("simulated carrier: delivering a report failed")
            self._stopping.wait(self._idle_seconds())

    def _idle_seconds(self) -> float:
        due = self.next_due()
        if due is None:
            return 0.2
        simulated = (due - self._clock.now()).total_seconds()
        return min(0.2, max(0.005, simulated / max(self._speedup, 1e-9)))

    # ------------------------------------------------------------------ calls

    def _ref(self, prefix: str, key: str) -> str:
        digest = hashlib.sha256(f"{self._seed}:{prefix}:{key}".encode()).hexdigest()
        return f"{prefix}{digest[:32]}"

    def _at(self, at: datetime, run: Callable[[], None]) -> None:
        heapq.heappush(self._timeline, _Due(at, next(self._seq), run))

    def _event(self, call: _Call, at: datetime, **fields: Any) -> CallEvent:
        base = CallEvent(call.ref, at, attempt_key=call.request.idempotency_key)
        return replace(base, **fields)

    def _schedule_dialing(self, call: _Call) -> None:
        start = call.placed_at
        self._at(start, lambda: self._status(call, start, CallStatus.INITIATED))
        pick_up = call.pick_up
        answer_at = start + timedelta(seconds=pick_up.after_seconds)
        if pick_up.kind in ("busy", "failed"):
            status = CallStatus.BUSY if pick_up.kind == "busy" else CallStatus.FAILED
            self._at(answer_at, lambda: self._finish(call, answer_at, status))
            return
        ringing = start + timedelta(seconds=min(1.0, pick_up.after_seconds / 2))
        self._at(ringing, lambda: self._status(call, ringing, CallStatus.RINGING))
        if pick_up.kind == "no-answer":
            self._at(answer_at, lambda: self._finish(call, answer_at, CallStatus.NO_ANSWER))
            return
        self._at(answer_at, lambda: self._answer(call, answer_at))

    def _status(self, call: _Call, at: datetime, status: CallStatus) -> None:
        if not call.ended:
            self._sink.on_call_event(self._event(call, at, status=status))

    def _answer(self, call: _Call, at: datetime) -> None:
        if call.ended:
            return
        call.answered_at = at
        verdict: AnsweredBy | None = None
        if call.request.detect_machine:
            verdict = AnsweredBy.MACHINE if call.pick_up.kind == "machine" else AnsweredBy.HUMAN
        event = self._event(call, at, status=CallStatus.IN_PROGRESS, answered_by=verdict)
        self._perform(call, at, self._sink.on_call_event(event))

    def _input(self, call: _Call, at: datetime, **fields: object) -> None:
        if call.ended:
            return
        self._perform(call, at, self._sink.on_call_event(self._event(call, at, **fields)))

    def _perform(self, call: _Call, at: datetime, actions: list[act.Action]) -> None:
        """Play the sink's answer: speak, then wait for the resident, transfer or hang up."""
        for action in actions:
            if isinstance(action, act.Say):
                at += timedelta(seconds=spoken_seconds(action.text))
            elif isinstance(action, act.Gather):
                self._gather(call, at, action)
                return
            elif isinstance(action, act.Transfer):
                self._transfer(call, at)
                return
            elif isinstance(action, act.Hangup):
                self._close(call, at)
                return
        # Nothing awaited (an end without hang-up, or an empty answer): the line closes, after
        # the conversation with the operator when the call was bridged.
        if call.bridged:
            at += timedelta(seconds=call.rng.uniform(*OPERATOR_TALK_SECONDS))
        self._close(call, at)

    def _close(self, call: _Call, at: datetime) -> None:
        self._at(at, lambda: self._finish(call, at, CallStatus.COMPLETED))

    def _gather(self, call: _Call, at: datetime, gather: act.Gather) -> None:
        response = self._respond(call, gather)
        reply = response.reply
        when = at + timedelta(seconds=response.after_seconds)
        if isinstance(reply, PutsDown):
            self._at(when, lambda: self._finish(call, when, CallStatus.COMPLETED, "resident"))
        elif isinstance(reply, StaysSilent):
            timeout = at + timedelta(seconds=gather.timeout_s)
            self._at(timeout, lambda: self._input(call, timeout, no_input=True))
        elif isinstance(reply, Keys):
            self._at(when, lambda: self._input(call, when, digits=reply.digits))
        else:
            self._at(
                when,
                lambda: self._input(
                    call, when, speech=reply.text, speech_confidence=reply.confidence
                ),
            )

    def _respond(self, call: _Call, gather: act.Gather) -> Response:
        if call.pick_up.kind == "machine":  # a voicemail greeting never presses anything
            return Response(StaysSilent(), float(gather.timeout_s))
        response = call.resident.respond(gather)
        if isinstance(response.reply, Says) and "speech" not in gather.input:
            return Response(StaysSilent(), float(gather.timeout_s))
        return response

    def _transfer(self, call: _Call, at: datetime) -> None:
        ok = call.rng.random() < TRANSFER_OK_SHARE
        when = at + timedelta(seconds=call.rng.uniform(3.0, 20.0))
        call.bridged = ok

        def report() -> None:
            self._input(call, when, transfer_ok=ok)

        self._at(when, report)

    def _finish(
        self, call: _Call, at: datetime, status: CallStatus, ended_by: str = "carrier"
    ) -> None:
        if call.ended:
            return
        call.ended = True
        duration = int((at - call.answered_at).total_seconds()) if call.answered_at else 0
        raw = {"ended_by": ended_by}
        event = self._event(call, at, status=status, duration_seconds=duration, raw=raw)
        self._sink.on_call_event(event)

    # ------------------------------------------------------------------ SMS

    def _schedule_sms(self, request: SmsRequest, ref: str, now: datetime) -> None:
        rng = call_rng(self._seed, f"sms:{request.idempotency_key}")
        sent_at = now + timedelta(seconds=1)
        final_at = now + timedelta(seconds=rng.uniform(3.0, 30.0))
        delivered = rng.random() < self._sms_delivered_share
        final = SmsStatus.DELIVERED if delivered else SmsStatus.UNDELIVERED
        error = None if delivered else "30003"  # Twilio: unreachable destination handset
        self._at(
            sent_at, lambda: self._sink.on_sms_status(SmsStatusEvent(ref, sent_at, SmsStatus.SENT))
        )
        self._at(
            final_at, lambda: self._sink.on_sms_status(SmsStatusEvent(ref, final_at, final, error))
        )
        if delivered and rng.random() < OPT_OUT_REPLY_SHARE:
            reply_at = final_at + timedelta(minutes=rng.uniform(1.0, 120.0))
            message = InboundSms(
                self._ref("SMIN", request.idempotency_key), reply_at, request.to_e164, "停止"
            )
            self._at(reply_at, lambda: self._sink.on_inbound_sms(message))
