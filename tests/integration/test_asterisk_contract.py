"""The carrier contract scenarios, played through AMI + FastAGI (see harness_asterisk)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialer.ports import CallRequest, CallStatus
from tests.contract.harness_asterisk import AsteriskHarness, open_harness
from tests.contract.scenarios import SCENARIOS, Press, ResidentScript, context
from tests.fakes.memory_sink import MemorySink

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")


@pytest.fixture(scope="module")
def harness() -> Iterator[AsteriskHarness]:
    with open_harness() as opened:
        yield opened


@pytest.mark.parametrize("script", SCENARIOS, ids=lambda s: s.name)
def test_scenario_outcome_over_asterisk(harness: AsteriskHarness, script: ResidentScript) -> None:
    if script.needs_speech and not harness.carrier.capabilities().speech_input:
        pytest.skip("the Asterisk carrier takes keypad input only (no speech recognition)")
    key = f"contract-{script.name}"
    sink = MemorySink()
    call = sink.expect(key, context())
    harness.play(CallRequest(1, key, "+819012345678", "+81120000000", 30), script, sink)
    assert call.outcome == script.expected
    if script.expected_carrier_result:
        assert call.carrier_result == script.expected_carrier_result
    finals = [e.status for e in call.events if e.status is not None and e.status.is_final]
    assert len(finals) == 1
    if script.answer in ("human", "machine"):
        assert finals == [CallStatus.COMPLETED]
    # keys come once, from GET DATA; the AMI DTMFEnd events do not repeat them
    presses = [item for item in script.inputs if isinstance(item, Press)]
    assert len([e for e in call.events if e.digits]) == len(presses)
