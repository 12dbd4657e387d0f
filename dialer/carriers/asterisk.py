"""The Asterisk carrier: calls placed with AMI ``Originate``, the IVR run over FastAGI.

How a call goes:

1. :meth:`AsteriskCarrier.place_call` sends ``Originate`` (``Async: true``) with a
   ``ChannelId`` derived from the attempt's idempotency key (so the carrier ref is known
   before Asterisk answers and a repeated request cannot make a second channel), the channel
   from ``asterisk.channel_template``, the outbound context, and the channel variables
   ``DUNNING_ATTEMPT`` (the attempt key), ``DUNNING_AMD`` (1/0) and ``DUNNING_AGI`` (our
   FastAGI address). No personal data goes into variables; the number is only in ``Channel``.
2. The outbound context answers into our FastAGI server (``dialer/carriers/fastagi.py``),
   which runs the IVR. Suggested dialplan::

       [dunning-outbound]
       exten => s,1,GotoIf($["${DUNNING_AMD}" = "1"]?amd:agi)
        same => n(amd),AMD()
        same => n(agi),AGI(${DUNNING_AGI},${AMDSTATUS})
        same => n,Hangup()

3. AMI events end the call: ``OriginateResponse`` (``Failure`` with Reason 5 busy, 3 no
   answer, 0/1/8 failed; ``Success`` only marks the call answered) and ``Hangup`` (Cause 16
   normal, 17 busy, 18/19 no answer, 21 rejected, 1 unallocated, ...). For an unanswered call
   the ``Hangup`` arrives first; its cause is kept and refines a vague Reason (0/1). The
   :class:`CallLedger` passes exactly one final status per call to the sink, whichever of AMI
   and AGI reports the end first.

The ``asterisk-ami`` package's defects are guarded in :mod:`dialer.carriers.ami_link`.

After a reconnect, calls that were in flight when the link dropped are reconciled against
``CoreShowChannels``: a channel Asterisk no longer has gets its final status.

Wiring: :func:`build_asterisk` makes the carrier, the TTS prompt store and the FastAGI server
(whose sink is the carrier's :class:`CallLedger`) from settings; ``AsteriskStack.start()``
listens for AGI, then logs in to AMI. Each dialer node originates with its own
``agi_host:agi_port`` in ``DUNNING_AGI`` and ignores AMI events of channels it did not place.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from dialer.carriers.ami_link import AmiLink, AmiUnavailable
from dialer.carriers.fastagi import FastAgiServer
from dialer.carriers.tts import PromptStore
from dialer.ports import (
    CallEvent,
    CallEventSink,
    CallHandle,
    CallRequest,
    CallStatus,
    Capabilities,
    InboundSms,
    SmsHandle,
    SmsRequest,
    SmsStatusEvent,
)
from kernel.db import Database
from kernel.models import Attempt
from kernel.settings import AsteriskSettings, Settings

if TYPE_CHECKING:
    from ivr_scripts.actions import Action

log = logging.getLogger(__name__)
CARRIER = "asterisk"
CHANNEL_PREFIX = "dun-"
ORIGINATE_REASONS: dict[int, CallStatus] = {
    0: CallStatus.FAILED,  # no such channel / could not dial
    1: CallStatus.FAILED,  # hung up before answer (rejected, unallocated...)
    3: CallStatus.NO_ANSWER,  # still ringing when the originate timed out
    5: CallStatus.BUSY,
    8: CallStatus.FAILED,  # congestion
}
HANGUP_CAUSES: dict[int, CallStatus] = {
    1: CallStatus.FAILED,  # unallocated number
    16: CallStatus.COMPLETED,
    17: CallStatus.BUSY,
    18: CallStatus.NO_ANSWER,
    19: CallStatus.NO_ANSWER,
    21: CallStatus.FAILED,  # call rejected
    34: CallStatus.FAILED,  # no circuit available
}


def channel_id_for(idempotency_key: str) -> str:
    """The Asterisk ``ChannelId`` (and our carrier ref) of an attempt: stable, opaque."""
    return CHANNEL_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def dial_channel(template: str, to_e164: str) -> str:
    """The ``Channel`` to originate: ``{e164}`` or ``{national}`` (+81 -> 0) filled in."""
    national = "0" + to_e164[3:] if to_e164.startswith("+81") else to_e164.lstrip("+")
    return template.replace("{e164}", to_e164).replace("{national}", national)


def unanswered_status(reason: int | None, cause: int | None) -> CallStatus:
    """Final status of a call nobody answered, from the Originate reason and hangup cause."""
    if reason in (3, 5):
        return ORIGINATE_REASONS[reason]
    by_cause = HANGUP_CAUSES.get(cause) if cause is not None else None
    if by_cause in (CallStatus.BUSY, CallStatus.NO_ANSWER):
        return by_cause
    return CallStatus.FAILED


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TrackedCall:
    attempt_key: str
    generation: int
    answered: bool = False
    cancel_requested: bool = False
    hangup_cause: int | None = None
    final: bool = False


class CallLedger:
    """The calls this process placed; forwards events to the sink, one final status each.

    It is itself a :class:`CallEventSink`, handed to the FastAGI server, so AMI and AGI
    events for one call meet here and reach the real sink in order, one at a time.
    """

    max_tracked = 50_000

    def __init__(self, sink: CallEventSink) -> None:
        self._sink = sink
        self._calls: dict[str, TrackedCall] = {}
        self._lock = threading.RLock()

    def track(self, carrier_ref: str, attempt_key: str, generation: int) -> None:
        with self._lock:
            if len(self._calls) >= self.max_tracked:
                self._forget_ended()
            self._calls.setdefault(carrier_ref, TrackedCall(attempt_key, generation))

    def _forget_ended(self) -> None:
        """Drop the older half of the ended calls (dicts keep insertion order)."""
        ended = [ref for ref, call in self._calls.items() if call.final]
        for ref in ended[: max(1, len(ended) // 2)]:
            del self._calls[ref]

    def get(self, carrier_ref: str) -> TrackedCall | None:
        with self._lock:
            return self._calls.get(carrier_ref)

    def open_calls(self) -> dict[str, TrackedCall]:
        with self._lock:
            return {ref: call for ref, call in self._calls.items() if not call.final}

    def on_call_event(self, event: CallEvent) -> list[Action]:
        with self._lock:
            call = self._calls.get(event.carrier_ref)
            if call is not None:
                if call.final:
                    return []
                call.answered = call.answered or event.status is CallStatus.IN_PROGRESS
                call.final = event.status is not None and event.status.is_final
                if event.attempt_key is None:
                    event = replace(event, attempt_key=call.attempt_key)
            return self._sink.on_call_event(event)

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self._sink.on_sms_status(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        self._sink.on_inbound_sms(message)


class ChannelListing:
    """Collects the ``CoreShowChannel`` events answering one ``CoreShowChannels`` action."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}  # Uniqueid -> ChannelState ("6" is Up)
        self.done = threading.Event()

    def feed(self, keys: Mapping[str, str]) -> None:
        if keys["Event"] == "CoreShowChannel":
            self.states[keys.get("Uniqueid", "")] = keys.get("ChannelState", "")
        elif keys["Event"] == "CoreShowChannelsComplete":
            self.done.set()


class AsteriskCarrier:
    """:class:`dialer.ports.Carrier` over AMI; the IVR itself runs in the FastAGI server."""

    name = CARRIER

    def __init__(self, settings: AsteriskSettings, sink: CallEventSink) -> None:
        self.settings = settings
        self.ledger = CallLedger(sink)
        self._listings: dict[str, ChannelListing] = {}
        self._listing_counter = 0
        self._lock = threading.Lock()
        self._link = AmiLink(settings, self._on_ami_event, self._reconcile)

    def start(self) -> AsteriskCarrier:
        self._link.start()
        return self

    def close(self) -> None:
        self._link.stop()

    def __enter__(self) -> AsteriskCarrier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._link.healthy

    def capabilities(self) -> Capabilities:
        return Capabilities(
            voice=True,
            sms=False,
            click_to_call=False,
            answering_machine_detection=True,
            speech_input=False,
            max_calls_per_second=10.0,
        )

    def place_call(self, request: CallRequest) -> CallHandle:
        ref = channel_id_for(request.idempotency_key)
        settings = self.settings
        keys = {
            "ActionID": ref,
            "Channel": dial_channel(settings.channel_template, request.to_e164),
            "Context": settings.outbound_context,
            "Exten": settings.outbound_exten,
            "Priority": "1",
            "Timeout": str(request.ring_timeout_seconds * 1000),
            "CallerID": request.from_e164,
            "Async": "true",
            "ChannelId": ref,
        }
        variables = {
            "DUNNING_ATTEMPT": request.idempotency_key,
            "DUNNING_AMD": "1" if request.detect_machine else "0",
            "DUNNING_AGI": f"agi://{settings.agi_host}:{settings.agi_port}/dunning",
        }
        known = self.ledger.get(ref)
        if known is not None:  # the same attempt again: never a second channel
            if known.final:
                return CallHandle(False, CARRIER, ref, "duplicate-attempt", "call already ended")
            return CallHandle(accepted=True, carrier=CARRIER, carrier_ref=ref)
        self.ledger.track(ref, request.idempotency_key, self._link.generation)
        try:
            response = self._link.send("Originate", keys, variables)
        except AmiUnavailable as error:
            return self._refused(ref, "ami-unavailable", str(error))
        if response is None:
            return self._refused(ref, "ami-timeout", "no response to Originate")
        if response.is_error():
            return self._refused(ref, "originate-error", response.keys.get("Message", ""))
        return CallHandle(accepted=True, carrier=CARRIER, carrier_ref=ref)

    def _refused(self, ref: str, code: str, message: str) -> CallHandle:
        call = self.ledger.get(ref)
        if call is not None:
            call.final = True
        log.warning("Originate not accepted (%s)", code)
        return CallHandle(False, CARRIER, ref, error_code=code, error_message=message)

    def hang_up(self, carrier_ref: str) -> None:
        call = self.ledger.get(carrier_ref)
        if call is not None:
            call.cancel_requested = not call.answered
        response = self._link.send("Hangup", {"Channel": carrier_ref, "Cause": "16"})
        if response is not None and response.is_error():
            log.info("Hangup refused: %s", response.keys.get("Message", ""))

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        return SmsHandle(
            accepted=False,
            carrier=CARRIER,
            error_code="unsupported",
            error_message="the Asterisk carrier does not send SMS",
        )

    def active_calls(self) -> list[str]:
        """Our channels (``dun-`` ids) Asterisk still has, via ``CoreShowChannels``."""
        return [ref for ref in self._channel_states() if ref.startswith(CHANNEL_PREFIX)]

    def _channel_states(self) -> dict[str, str]:
        listing = ChannelListing()
        with self._lock:
            self._listing_counter += 1
            action_id = f"channels-{self._listing_counter}"
            self._listings[action_id] = listing
        try:
            response = self._link.send("CoreShowChannels", {"ActionID": action_id})
            if response is None or response.is_error():
                raise AmiUnavailable("CoreShowChannels refused")
            if not listing.done.wait(self.settings.ami_read_timeout_seconds):
                raise AmiUnavailable("CoreShowChannels list incomplete")
            return listing.states
        finally:
            with self._lock:
                self._listings.pop(action_id, None)

    def _on_ami_event(self, keys: dict[str, str]) -> None:
        listing = self._listings.get(keys.get("ActionID", ""))
        if listing is not None:
            listing.feed(keys)
            return
        handler = self._handlers.get(keys["Event"])
        if handler is not None:
            handler(self, keys)

    def _on_originate_response(self, keys: dict[str, str]) -> None:
        ref = keys.get("ActionID") or keys.get("Uniqueid", "")
        call = self.ledger.get(ref)
        if call is None:
            return
        if keys.get("Response") == "Success":
            call.answered = True
            return
        reason = _int(keys.get("Reason"))
        status = unanswered_status(reason, call.hangup_cause)
        if call.cancel_requested:
            status = CallStatus.CANCELED
        self._deliver(ref, status, {"event": "OriginateResponse", "reason": str(reason)})

    def _on_hangup(self, keys: dict[str, str]) -> None:
        ref = keys.get("Uniqueid", "")
        call = self.ledger.get(ref)
        if call is None:
            return
        cause = _int(keys.get("Cause"))
        call.hangup_cause = cause
        if call.answered:
            self._deliver(ref, CallStatus.COMPLETED, {"event": "Hangup", "cause": str(cause)})

    def _on_newchannel(self, keys: dict[str, str]) -> None:
        ref = keys.get("Uniqueid", "")
        if self.ledger.get(ref) is not None:
            self._deliver(ref, CallStatus.INITIATED, {"event": "Newchannel"})

    def _on_newstate(self, keys: dict[str, str]) -> None:
        ref = keys.get("Uniqueid", "")
        call = self.ledger.get(ref)
        if call is not None and not call.answered and keys.get("ChannelState") == "5":
            self._deliver(ref, CallStatus.RINGING, {"event": "Newstate"})

    _handlers: dict[str, Callable[[AsteriskCarrier, dict[str, str]], None]] = {
        "OriginateResponse": _on_originate_response,
        "Hangup": _on_hangup,
        "Newchannel": _on_newchannel,
        "Newstate": _on_newstate,
    }

    def _deliver(self, ref: str, status: CallStatus, raw: dict[str, str]) -> None:
        event = CallEvent(carrier_ref=ref, occurred_at=_now(), status=status, raw=raw)
        self.ledger.on_call_event(event)

    def _reconcile(self) -> None:
        """After a reconnect: calls placed before it whose channel is gone get their end."""
        generation = self._link.generation
        stale = {
            ref: call
            for ref, call in self.ledger.open_calls().items()
            if call.generation < generation
        }
        if not stale:
            return
        alive = self._channel_states()
        for ref, call in stale.items():
            if ref in alive:
                call.answered = call.answered or alive[ref] == "6"  # answered while we were away
                continue
            if call.answered:
                status = CallStatus.COMPLETED
            else:
                status = unanswered_status(None, call.hangup_cause)
            self._deliver(ref, status, {"event": "reconciled", "reason": "channel-gone"})


def attempt_campaigns(database: Database) -> Callable[[str], int | None]:
    """The campaign of an attempt key (the FastAGI server files prompts per campaign)."""

    def campaign_of(attempt_key: str) -> int | None:
        with database.read_only() as session:
            query = select(Attempt.campaign_id).where(Attempt.idempotency_key == attempt_key)
            return session.scalar(query)

    return campaign_of


@dataclass
class AsteriskStack:
    """The carrier and its FastAGI server, started and stopped together."""

    carrier: AsteriskCarrier
    agi: FastAgiServer

    def start(self) -> AsteriskStack:
        self.agi.start()
        try:
            self.carrier.start()
        except Exception:
            self.agi.stop()
            raise
        return self

    def close(self) -> None:
        self.carrier.close()
        self.agi.stop()


def build_asterisk(settings: Settings, sink: CallEventSink, database: Database) -> AsteriskStack:
    """Wire the Asterisk carrier from settings: AMI carrier, TTS prompts, FastAGI server."""
    ast = settings.asterisk
    carrier = AsteriskCarrier(ast, sink)
    prompts = PromptStore(settings.var_dir, ast.tts_command, ast.tts_voice, ast.tts_timeout_seconds)
    agi = FastAgiServer(
        carrier.ledger,
        prompts,
        attempt_campaigns(database),
        host=ast.agi_host,
        port=ast.agi_port,
        operator_dial=ast.operator_dial,
        fallback_prompt=ast.fallback_prompt,
    )
    return AsteriskStack(carrier, agi)
