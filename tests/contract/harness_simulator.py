"""The simulator's contract harness: a resident who follows the scenario script exactly.

The call goes through :class:`~dialer.simulator.SimulatedCarrier` as in production (its real
timeline, event shapes and action handling); only the resident is scripted instead of drawn
from the statistical model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

from dialer.clock import SimulatedClock
from dialer.ports import (
    CallEvent,
    CallEventSink,
    CallRequest,
    Carrier,
    InboundSms,
    SmsStatusEvent,
)
from dialer.residents import Keys, PickUp, PutsDown, Reply, Response, Says, StaysSilent
from dialer.simulator import SimulatedCarrier
from ivr_scripts.actions import Action, Gather
from tests.contract.scenarios import (
    CarrierHarness,
    HangUp,
    Press,
    ResidentInput,
    ResidentScript,
    Silence,
    Speak,
)
from tests.contract.seed import SEEDED_AT


class ScriptedResident:
    """Answers as the script says, then plays its inputs in order; when out of them, hangs up."""

    def __init__(self, script: ResidentScript) -> None:
        self.script = script
        self._inputs = list(script.inputs)

    def pick_up(self, ring_timeout_seconds: float) -> PickUp:
        if self.script.answer in ("human", "machine"):
            return PickUp(self.script.answer, 3.0)
        if self.script.answer == "no-answer":
            return PickUp("no-answer", ring_timeout_seconds)
        return PickUp(self.script.answer, 1.5)

    def respond(self, gather: Gather) -> Response:
        if not self._inputs:
            return Response(PutsDown(), 1.0)
        return Response(_reply(self._inputs.pop(0)), 1.0)


def _reply(item: ResidentInput) -> Reply:
    if isinstance(item, Press):
        return Keys(item.digits)
    if isinstance(item, Speak):
        return Says(item.text, item.confidence)
    if isinstance(item, Silence):
        return StaysSilent()
    assert isinstance(item, HangUp)
    return PutsDown()


class _SinkSlot:
    """The sink a harness is given only when it plays; the carrier is built before that."""

    def __init__(self) -> None:
        self.target: CallEventSink | None = None

    def _sink(self) -> CallEventSink:
        assert self.target is not None, "play() sets the sink"
        return self.target

    def on_call_event(self, event: CallEvent) -> list[Action]:
        return self._sink().on_call_event(event)

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self._sink().on_sms_status(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        self._sink().on_inbound_sms(message)


class SimulatorHarness:
    def __init__(self, start: datetime = SEEDED_AT) -> None:
        self.clock = SimulatedClock(start)
        self._slot = _SinkSlot()
        self._script: ResidentScript | None = None
        self.simulator = SimulatedCarrier(
            self._slot, clock=self.clock, seed=7, residents=self._resident
        )
        self.carrier: Carrier = self.simulator

    def _resident(self, rng: random.Random, at: datetime, request: CallRequest) -> ScriptedResident:
        assert self._script is not None
        return ScriptedResident(self._script)

    def play(self, request: CallRequest, script: ResidentScript, sink: CallEventSink) -> None:
        self._slot.target, self._script = sink, script
        handle = self.simulator.place_call(request)
        assert handle.accepted, handle.error_message
        while (due := self.simulator.next_due()) is not None:
            self.clock.set(due)
            self.simulator.run_due()


@contextmanager
def _harness() -> Iterator[CarrierHarness]:
    yield SimulatorHarness()


def open_harness() -> AbstractContextManager[CarrierHarness]:
    return _harness()
