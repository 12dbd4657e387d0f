"""The shared CallEvent -> IVR event mapping, and late answering-machine verdicts."""

from __future__ import annotations

from datetime import UTC, datetime

import ivr_scripts.actions as act
import ivr_scripts.events as ev
from dialer.call_events import CallPhase, carrier_result, next_phase, to_ivr_event
from dialer.ports import AnsweredBy, CallEvent, CallStatus
from ivr_scripts import load_builtin_flow, start, step
from ivr_scripts.model import OutcomeCode
from tests.contract.scenarios import context

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def _event(**fields: object) -> CallEvent:
    return CallEvent(carrier_ref="CA1", occurred_at=NOW, **fields)  # type: ignore[arg-type]


def test_dialing_phase_only_reacts_to_an_answer() -> None:
    assert to_ivr_event(_event(status=CallStatus.RINGING), CallPhase.DIALING) is None
    answered = to_ivr_event(_event(status=CallStatus.IN_PROGRESS), CallPhase.DIALING)
    assert answered == ev.CallAnswered("unknown")
    assert next_phase(_event(status=CallStatus.IN_PROGRESS), CallPhase.DIALING) is CallPhase.IN_FLOW


def test_in_flow_inputs_map_to_engine_events() -> None:
    assert to_ivr_event(_event(digits="1"), CallPhase.IN_FLOW) == ev.Digits("1")
    speech = to_ivr_event(_event(speech="はい", speech_confidence=3.0), CallPhase.IN_FLOW)
    assert speech == ev.Speech("はい", 1.0)  # confidence clamped into [0, 1]
    assert to_ivr_event(_event(no_input=True), CallPhase.IN_FLOW) == ev.NoInput()
    assert to_ivr_event(_event(transfer_ok=False), CallPhase.IN_FLOW) == ev.TransferResult(False)
    final = _event(status=CallStatus.COMPLETED)
    assert to_ivr_event(final, CallPhase.IN_FLOW) == ev.Hangup()
    assert to_ivr_event(final, CallPhase.ENDED) is None
    assert carrier_result(_event(status=CallStatus.BUSY)) == "busy"


def test_late_machine_verdict_switches_to_the_machine_message_before_any_input() -> None:
    flow, ctx = load_builtin_flow(), context()
    _, state = step(flow, ctx, start(flow, ctx), ev.CallAnswered("unknown"))
    late = to_ivr_event(_event(answered_by=AnsweredBy.MACHINE), CallPhase.IN_FLOW)
    assert late == ev.CallAnswered("machine")
    actions, state = step(flow, ctx, state, late)
    assert state.outcome is OutcomeCode.MACHINE
    assert not any(ctx.name_kana in a.text for a in actions if isinstance(a, act.Say))


def test_late_machine_verdict_after_input_is_ignored() -> None:
    flow, ctx = load_builtin_flow(), context()
    _, state = step(flow, ctx, start(flow, ctx), ev.CallAnswered("unknown"))
    _, state = step(flow, ctx, state, ev.Digits("1"))
    actions, after = step(flow, ctx, state, ev.CallAnswered("machine"))
    assert actions == [] and after == state
