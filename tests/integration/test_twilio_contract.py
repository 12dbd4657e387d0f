"""The contract scenarios played through Twilio: fake REST server, signed webhooks, TwiML."""

from __future__ import annotations

import pytest

from dialer.ports import CallRequest
from tests.contract.harness_twilio import open_harness
from tests.contract.scenarios import SCENARIOS, ResidentScript, context
from tests.fakes.memory_sink import MemorySink


def _request() -> CallRequest:
    return CallRequest(
        attempt_id=7,
        idempotency_key="att-7-1",
        to_e164="+819012345678",
        from_e164="+81312345678",
        ring_timeout_seconds=30,
    )


def _play(script: ResidentScript, async_amd: bool) -> None:
    sink = MemorySink()
    call = sink.expect("att-7-1", context())
    with open_harness(async_amd=async_amd) as harness:
        harness.play(_request(), script, sink)
        assert not harness.fake.violations
    assert call.outcome == script.expected
    if script.expected_carrier_result:
        assert call.carrier_result == script.expected_carrier_result


def _async_cases() -> list[object]:
    # A machine verdict that arrives mid-greeting switches to the machine message
    # (dialer.call_events maps it to CallAnswered("machine"); the engine honours it before any
    # input), so the async AMD run expects the same outcomes as the synchronous one.
    return [pytest.param(s, id=s.name) for s in SCENARIOS]


@pytest.mark.parametrize("script", _async_cases())
def test_scenario_with_async_amd(script: ResidentScript) -> None:
    _play(script, async_amd=True)


@pytest.mark.parametrize("script", SCENARIOS, ids=lambda s: s.name)
def test_scenario_with_amd_before_the_flow(script: ResidentScript) -> None:
    _play(script, async_amd=False)
