"""An in-memory call-session sink: the real IVR engine, no database.

Carrier adapter tests (Twilio, Asterisk) use it to drive the standard flow through their
protocol without the dialer's persistence; the dialer's own ``CallSession`` is tested against
the same :class:`~dialer.ports.CallEventSink` contract in ``tests/contract``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ivr_scripts.actions as act
from dialer.call_events import CallPhase, carrier_result, next_phase, to_ivr_event
from dialer.ports import CallEvent, InboundSms, SmsStatusEvent
from ivr_scripts import CallContext, Flow, State, load_builtin_flow, start, step
from ivr_scripts.model import OutcomeCode


@dataclass
class MemoryCall:
    context: CallContext
    state: State
    phase: CallPhase = CallPhase.DIALING
    events: list[CallEvent] = field(default_factory=list)
    actions: list[act.Action] = field(default_factory=list)
    carrier_result: str | None = None

    @property
    def outcome(self) -> OutcomeCode | None:
        return self.state.outcome

    @property
    def said(self) -> list[str]:
        return [a.text for a in self.actions if isinstance(a, act.Say)]


class MemorySink:
    """Runs each call's flow in memory; calls are keyed by attempt key, then by carrier ref."""

    def __init__(self, flow: Flow | None = None) -> None:
        self.flow = flow or load_builtin_flow()
        self.calls: dict[str, MemoryCall] = {}
        self._by_ref: dict[str, str] = {}
        self.sms_status: list[SmsStatusEvent] = []
        self.inbound: list[InboundSms] = []

    def expect(self, attempt_key: str, context: CallContext) -> MemoryCall:
        call = MemoryCall(context=context, state=start(self.flow, context))
        self.calls[attempt_key] = call
        return call

    def bind(self, attempt_key: str, carrier_ref: str) -> None:
        self._by_ref[carrier_ref] = attempt_key

    def call(self, key_or_ref: str) -> MemoryCall:
        return self.calls[self._by_ref.get(key_or_ref, key_or_ref)]

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        key = event.attempt_key or self._by_ref.get(event.carrier_ref)
        if key is None or key not in self.calls:
            return []
        if event.attempt_key and event.carrier_ref:
            self._by_ref.setdefault(event.carrier_ref, event.attempt_key)
        call = self.calls[key]
        call.events.append(event)
        ivr_event = to_ivr_event(event, call.phase)
        call.phase = next_phase(event, call.phase)
        call.carrier_result = carrier_result(event) or call.carrier_result
        if ivr_event is None:
            return []
        actions, call.state = step(self.flow, call.context, call.state, ivr_event)
        call.actions.extend(actions)
        return actions

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self.sms_status.append(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        self.inbound.append(message)
