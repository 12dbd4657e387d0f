"""The contract scenarios hold for the engine itself (events fed straight to the sink)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialer.ports import AnsweredBy, CallEvent, CallStatus
from tests.contract.scenarios import (
    SCENARIOS,
    HangUp,
    Press,
    ResidentScript,
    Silence,
    Speak,
    context,
)
from tests.fakes.memory_sink import MemorySink

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
FINAL = {"busy": CallStatus.BUSY, "no-answer": CallStatus.NO_ANSWER, "failed": CallStatus.FAILED}


def _event(**fields: object) -> CallEvent:
    return CallEvent(carrier_ref="CA1", occurred_at=NOW, attempt_key="k1", **fields)  # type: ignore[arg-type]


def _play(script: ResidentScript, sink: MemorySink) -> None:
    if script.answer in FINAL:
        sink.on_call_event(_event(status=FINAL[script.answer]))
        return
    sink.on_call_event(_event(status=CallStatus.IN_PROGRESS, answered_by=AnsweredBy(script.answer)))
    for item in script.inputs:
        if isinstance(item, Press):
            sink.on_call_event(_event(digits=item.digits))
        elif isinstance(item, Speak):
            sink.on_call_event(_event(speech=item.text, speech_confidence=item.confidence))
        elif isinstance(item, Silence):
            sink.on_call_event(_event(no_input=True))
        elif isinstance(item, HangUp):
            break
    sink.on_call_event(_event(status=CallStatus.COMPLETED))


@pytest.mark.parametrize("script", SCENARIOS, ids=lambda s: s.name)
def test_scenario_outcome_from_the_engine(script: ResidentScript) -> None:
    sink = MemorySink()
    call = sink.expect("k1", context())
    _play(script, sink)
    assert call.outcome == script.expected
    if script.expected_carrier_result:
        assert call.carrier_result == script.expected_carrier_result
