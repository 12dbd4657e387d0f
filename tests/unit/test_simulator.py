"""The simulated carrier: deterministic per seed, realistic answer rates, Twilio-shaped events.

The sink is the in-memory one (the real IVR engine, no database), so the simulator's residents
act on the real standard flow.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import ivr_scripts.actions as act
from dialer.clock import SimulatedClock
from dialer.ports import (
    AnsweredBy,
    CallEvent,
    CallRequest,
    CallStatus,
    InboundSms,
    SmsRequest,
    SmsStatus,
    SmsStatusEvent,
)
from dialer.residents import AnswerModel, line_kind
from dialer.simulator import SimulatedCarrier
from kernel.models.enums import PhoneKind
from tests.contract.scenarios import context
from tests.fakes.memory_sink import MemorySink

WEDNESDAY_2PM = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 14:00 in Tokyo
SUNDAY_2PM = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
WEDNESDAY_7PM = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
MOBILE = "+819012345678"
FIXED = "+81312345678"
ALLOWED_STATUSES = {
    CallStatus.INITIATED,
    CallStatus.RINGING,
    CallStatus.IN_PROGRESS,
    CallStatus.COMPLETED,
    CallStatus.BUSY,
    CallStatus.NO_ANSWER,
}


class RecordingSink(MemorySink):
    """The in-memory engine sink, expecting every call it hears about."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[CallEvent] = []

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        self.events.append(event)
        if event.attempt_key and event.attempt_key not in self.calls:
            self.expect(event.attempt_key, context())
        return super().on_call_event(event)


def _request(key: str, number: str = MOBILE, detect_machine: bool = True) -> CallRequest:
    return CallRequest(1, key, number, FIXED, 30, detect_machine=detect_machine)


def _run(
    keys: list[str], *, seed: int = 1, start: datetime = WEDNESDAY_2PM, number: str = MOBILE
) -> RecordingSink:
    sink = RecordingSink()
    clock = SimulatedClock(start)
    carrier = SimulatedCarrier(sink, clock=clock, seed=seed)
    for key in keys:
        assert carrier.place_call(_request(key, number)).accepted
    carrier.run_all()
    assert carrier.active_calls() == []
    return sink


def _story(sink: RecordingSink, key: str) -> list[tuple[object, ...]]:
    """One call's reports, with times relative to its first report."""
    events = [e for e in sink.events if e.attempt_key == key]
    first = events[0].occurred_at
    return [
        (e.occurred_at - first, e.status, e.answered_by, e.digits, e.speech, e.no_input)
        for e in events
    ]


def _human_share(sink: RecordingSink) -> float:
    answered = {e.attempt_key for e in sink.events if e.answered_by is AnsweredBy.HUMAN}
    return len(answered) / len(sink.calls)


def test_same_seed_same_calls_whatever_the_order() -> None:
    keys = [f"k{i}" for i in range(40)]
    forward = _run(keys)
    backward = _run(list(reversed(keys)))
    for key in keys:
        assert _story(forward, key) == _story(backward, key)
        assert forward.call(key).outcome == backward.call(key).outcome


def test_another_seed_gives_other_calls() -> None:
    keys = [f"k{i}" for i in range(40)]
    first, second = _run(keys, seed=1), _run(keys, seed=2)
    assert [_story(first, k) for k in keys] != [_story(second, k) for k in keys]


def test_sunday_answer_rate_is_well_above_a_weekday() -> None:
    keys = [f"k{i}" for i in range(800)]
    weekday = _human_share(_run(keys, start=WEDNESDAY_2PM))
    sunday = _human_share(_run(keys, start=SUNDAY_2PM))
    expected_ratio = AnswerModel().sunday / AnswerModel().weekday  # 41% / 23% (R-3)
    assert sunday / weekday > 1.3
    assert sunday / weekday == pytest.approx(expected_ratio, rel=0.25)


def test_fixed_lines_answer_more_in_the_evening_than_on_a_working_afternoon() -> None:
    keys = [f"k{i}" for i in range(800)]
    afternoon = _human_share(_run(keys, start=WEDNESDAY_2PM, number=FIXED))
    evening = _human_share(_run(keys, start=WEDNESDAY_7PM, number=FIXED))
    assert evening / afternoon > 1.5


def test_events_have_the_shapes_real_carriers_send() -> None:
    sink = _run([f"k{i}" for i in range(300)])
    for key in sink.calls:
        events = [e for e in sink.events if e.attempt_key == key]
        statuses = [e.status for e in events if e.status is not None]
        assert set(statuses) <= ALLOWED_STATUSES
        assert statuses[0] is CallStatus.INITIATED
        assert [s.is_final for s in statuses].count(True) == 1 and statuses[-1].is_final
        times = [e.occurred_at for e in events]
        assert times == sorted(times)
        assert {e.carrier_ref for e in events} == {events[0].carrier_ref}
        assert all(e.answered_by in (None, AnsweredBy.HUMAN, AnsweredBy.MACHINE) for e in events)
    finals = Counter(e.status for e in sink.events if e.status and e.status.is_final)
    assert finals[CallStatus.BUSY] > 0 and finals[CallStatus.NO_ANSWER] > 0
    assert finals[CallStatus.COMPLETED] > finals[CallStatus.BUSY]


def test_residents_take_many_paths_through_the_flow() -> None:
    sink = _run([f"k{i}" for i in range(600)], start=SUNDAY_2PM)
    outcomes = Counter(call.outcome.value for call in sink.calls.values() if call.outcome)
    for expected in ("machine", "rpc_confirmed", "wrong_party", "hangup_before_confirm"):
        assert outcomes[expected] > 0, outcomes
    assert len(outcomes) >= 6, outcomes
    inputs = [e for e in sink.events if e.digits or e.speech or e.no_input]
    assert any(e.speech for e in inputs) and any(e.no_input for e in inputs)


def test_machine_without_detection_is_answered_without_a_verdict() -> None:
    sink = RecordingSink()
    carrier = SimulatedCarrier(sink, clock=SimulatedClock(SUNDAY_2PM), seed=3)
    for i in range(200):
        carrier.place_call(_request(f"k{i}", detect_machine=False))
    carrier.run_all()
    assert all(e.answered_by is None for e in sink.events)
    assert any(e.status is CallStatus.IN_PROGRESS for e in sink.events)


def test_placing_the_same_attempt_twice_makes_one_call() -> None:
    sink = RecordingSink()
    carrier = SimulatedCarrier(sink, clock=SimulatedClock(WEDNESDAY_2PM), seed=1)
    first, again = carrier.place_call(_request("k1")), carrier.place_call(_request("k1"))
    assert first.carrier_ref == again.carrier_ref
    carrier.run_all()
    assert [e.status for e in sink.events].count(CallStatus.INITIATED) == 1


def test_invalid_numbers_are_refused() -> None:
    carrier = SimulatedCarrier(RecordingSink(), clock=SimulatedClock(WEDNESDAY_2PM), seed=1)
    handle = carrier.place_call(_request("k1", number="090-1234-5678"))
    assert not handle.accepted and handle.error_code == "invalid_number"
    assert carrier.next_due() is None


def test_hang_up_ends_the_call_and_drops_its_pending_reports() -> None:
    sink = RecordingSink()
    clock = SimulatedClock(WEDNESDAY_2PM)
    carrier = SimulatedCarrier(sink, clock=clock, seed=1)
    ref = carrier.place_call(_request("k1")).carrier_ref
    assert ref is not None and carrier.active_calls() == [ref]
    carrier.run_until(clock.now())  # initiated only
    carrier.hang_up(ref)
    carrier.run_all()
    finals = [e.status for e in sink.events if e.status and e.status.is_final]
    assert finals == [CallStatus.CANCELED]
    assert carrier.active_calls() == []


def test_run_until_delivers_only_what_is_due() -> None:
    sink = RecordingSink()
    clock = SimulatedClock(WEDNESDAY_2PM)
    carrier = SimulatedCarrier(sink, clock=clock, seed=1)
    carrier.place_call(_request("k1"))
    carrier.run_until(WEDNESDAY_2PM)
    assert [e.status for e in sink.events] == [CallStatus.INITIATED]
    due = carrier.next_due()
    assert due is not None and due > WEDNESDAY_2PM
    clock.set(due)
    assert carrier.run_due() >= 1


class SmsSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[SmsStatusEvent] = []
        self.replies: list[InboundSms] = []

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self.statuses.append(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        self.replies.append(message)


def _sms(key: str, number: str = MOBILE) -> SmsRequest:
    return SmsRequest(1, key, number, "KAKUSHI", "架空市納税課です。")


def test_sms_goes_to_mobiles_only_and_reports_delivery() -> None:
    sink = SmsSink()
    carrier = SimulatedCarrier(
        sink, clock=SimulatedClock(WEDNESDAY_2PM), seed=1, sms_delivered_share=0.8
    )
    assert not carrier.send_sms(_sms("fixed", FIXED)).accepted
    handles = [carrier.send_sms(_sms(f"s{i}")) for i in range(400)]
    assert all(h.accepted for h in handles)
    assert carrier.send_sms(_sms("s0")).carrier_ref == handles[0].carrier_ref
    carrier.run_all()
    finals = Counter(e.status for e in sink.statuses if e.status is not SmsStatus.SENT)
    assert sum(finals.values()) == 400
    assert finals[SmsStatus.DELIVERED] / 400 == pytest.approx(0.8, abs=0.06)
    assert all(reply.body == "停止" for reply in sink.replies)


def test_line_kind_from_the_number() -> None:
    assert line_kind("+819012345678") is PhoneKind.MOBILE
    assert line_kind("+815012345678") is PhoneKind.VOIP
    assert line_kind("+81312345678") is PhoneKind.FIXED_LINE


def test_real_time_mode_delivers_on_an_accelerated_clock() -> None:
    sink = RecordingSink()
    clock = SimulatedClock(WEDNESDAY_2PM, speedup=5000.0)
    carrier = SimulatedCarrier(sink, clock=clock, seed=1, speedup=5000.0)
    carrier.start()
    try:
        carrier.place_call(_request("k1"))
        deadline = time.monotonic() + 20
        while carrier.active_calls() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        carrier.stop()
    assert carrier.active_calls() == []
    assert any(e.status and e.status.is_final for e in sink.events)
    assert clock.now() - WEDNESDAY_2PM > timedelta(seconds=0)
