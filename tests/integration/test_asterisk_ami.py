"""AsteriskCarrier against a server that speaks the AMI wire protocol (loopback)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from dialer.carriers.ami_link import AmiLoginError
from dialer.carriers.asterisk import (
    AsteriskCarrier,
    CallLedger,
    channel_id_for,
    dial_channel,
    unanswered_status,
)
from dialer.ports import CallEvent, CallRequest, CallStatus, SmsRequest
from ivr_scripts.actions import Action
from tests.contract.harness_asterisk import AsteriskHarness, harness_settings, open_harness
from tests.contract.scenarios import SCENARIOS, context
from tests.fakes.ami_server import FakeAmiServer, FakeChannel
from tests.fakes.memory_sink import MemorySink

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")

PHONE = "+819012345678"
SECTION = "+81120000000"


def request(key: str, detect_machine: bool = True) -> CallRequest:
    return CallRequest(1, key, PHONE, SECTION, 30, detect_machine)


@dataclass
class EventLog:
    """A sink that records every event (and can be told to fail on the first one)."""

    events: list[CallEvent] = field(default_factory=list)
    fail_first: bool = False

    def on_call_event(self, event: CallEvent) -> list[Action]:
        self.events.append(event)
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("sink exploded")
        return []

    def on_sms_status(self, event: object) -> None:
        pass

    def on_inbound_sms(self, message: object) -> None:
        pass

    def finals(self, ref: str) -> list[CallStatus]:
        return [
            e.status
            for e in self.events
            if e.carrier_ref == ref and e.status is not None and e.status.is_final
        ]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.fixture
def ami() -> Iterator[FakeAmiServer]:
    with FakeAmiServer() as server:
        yield server


@pytest.fixture
def log_sink() -> EventLog:
    return EventLog()


@pytest.fixture
def carrier(ami: FakeAmiServer, log_sink: EventLog) -> Iterator[AsteriskCarrier]:
    with AsteriskCarrier(harness_settings(ami, 4573), log_sink) as started:
        yield started


def test_login_failure_is_a_clear_error_without_the_secret(ami: FakeAmiServer) -> None:
    settings = harness_settings(ami, 4573).model_copy(update={"ami_username": "intruder"})
    carrier = AsteriskCarrier(settings, EventLog())
    with pytest.raises(AmiLoginError, match="intruder.*Authentication failed") as caught:
        carrier.start()
    assert ami.secret not in str(caught.value)
    assert ami.logins == 0


def test_originate_action_is_async_with_channel_id_and_no_personal_variables(
    ami: FakeAmiServer, carrier: AsteriskCarrier
) -> None:
    handle = carrier.place_call(request("key-42", detect_machine=False))
    ref = channel_id_for("key-42")
    assert (handle.accepted, handle.carrier, handle.carrier_ref) == (True, "asterisk", ref)
    originate = next(p for p in ami.actions if p.get("Action") == "Originate")
    assert originate.get("Async") == "true"
    assert originate.get("ChannelId") == ref == originate.get("ActionID")
    assert originate.get("Channel") == "PJSIP/09012345678@trunk"
    assert (originate.get("Context"), originate.get("Exten")) == ("dunning-outbound", "s")
    assert originate.get("Timeout") == "30000"
    assert originate.variables["DUNNING_ATTEMPT"] == "key-42"
    assert originate.variables["DUNNING_AMD"] == "0"
    assert originate.variables["DUNNING_AGI"] == "agi://127.0.0.1:4573/dunning"
    values = " ".join(originate.variables.values())
    assert "9012345678" not in values and "ヤマダ" not in values


def test_placing_the_same_attempt_twice_makes_one_channel(
    ami: FakeAmiServer, carrier: AsteriskCarrier
) -> None:
    first = carrier.place_call(request("same"))
    again = carrier.place_call(request("same"))
    assert again == first and first.accepted
    assert [p.get("Action") for p in ami.actions].count("Originate") == 1


def test_originate_refused_by_asterisk(ami: FakeAmiServer, carrier: AsteriskCarrier) -> None:
    ref = channel_id_for("left-over")
    ami.channels[ref] = FakeChannel(ref, "PJSIP/trunk-000000ff", ami.actions[0])
    handle = carrier.place_call(request("left-over"))
    assert (handle.accepted, handle.error_code) == (False, "originate-error")
    assert carrier.place_call(request("left-over")).error_code == "duplicate-attempt"


@pytest.mark.parametrize(
    ("reason", "cause", "expected"),
    [
        (5, 17, CallStatus.BUSY),
        (3, 19, CallStatus.NO_ANSWER),
        (3, 16, CallStatus.NO_ANSWER),
        (0, 1, CallStatus.FAILED),
        (1, 21, CallStatus.FAILED),
        (8, 34, CallStatus.FAILED),
        (1, 17, CallStatus.BUSY),  # a vague reason refined by the hangup cause
        (1, 18, CallStatus.NO_ANSWER),
    ],
)
def test_unanswered_originate_results_are_mapped(
    ami: FakeAmiServer,
    carrier: AsteriskCarrier,
    log_sink: EventLog,
    reason: int,
    cause: int,
    expected: CallStatus,
) -> None:
    ami.behaviour = lambda server, channel: server.end_unanswered(channel, reason, cause)
    ref = carrier.place_call(request(f"k-{reason}-{cause}")).carrier_ref or ""
    wait_for(lambda: bool(log_sink.finals(ref)))
    time.sleep(0.05)  # anything after the final would show up now
    assert log_sink.finals(ref) == [expected]
    statuses = [e.status for e in log_sink.events if e.carrier_ref == ref]
    assert statuses[:2] == [CallStatus.INITIATED, CallStatus.RINGING]
    assert all(e.attempt_key == f"k-{reason}-{cause}" for e in log_sink.events)


@pytest.mark.parametrize("cause", [16, 17, 19, 21])
def test_answered_calls_complete_whatever_the_hangup_cause(
    ami: FakeAmiServer, carrier: AsteriskCarrier, log_sink: EventLog, cause: int
) -> None:
    def answer_then_hang_up(server: FakeAmiServer, channel: FakeChannel) -> None:
        server.answer(channel)
        server.hang_up_channel(channel, cause)

    ami.behaviour = answer_then_hang_up
    ref = carrier.place_call(request(f"answered-{cause}")).carrier_ref or ""
    wait_for(lambda: bool(log_sink.finals(ref)))
    assert log_sink.finals(ref) == [CallStatus.COMPLETED]
    assert log_sink.events[-1].raw == {"event": "Hangup", "cause": str(cause)}


def test_hang_up_before_answer_is_canceled(
    ami: FakeAmiServer, carrier: AsteriskCarrier, log_sink: EventLog
) -> None:
    def ring_until_hung_up(server: FakeAmiServer, channel: FakeChannel) -> None:
        server.channel_event("Newchannel", channel)
        channel.hangup_requested.wait(10)
        server.end_unanswered(channel, 1, channel.hangup_cause)

    ami.behaviour = ring_until_hung_up
    ref = carrier.place_call(request("to-cancel")).carrier_ref or ""
    wait_for(lambda: ref in ami.channels)
    assert carrier.active_calls() == [ref]
    carrier.hang_up(ref)
    wait_for(lambda: bool(log_sink.finals(ref)))
    assert log_sink.finals(ref) == [CallStatus.CANCELED]
    hangup = next(p for p in ami.actions if p.get("Action") == "Hangup")
    assert hangup.get("Channel") == ref


def test_active_calls_lists_only_our_channels(ami: FakeAmiServer, carrier: AsteriskCarrier) -> None:
    hold = threading.Event()
    ami.behaviour = lambda server, channel: None if hold.wait(10) else None
    ref = carrier.place_call(request("in-flight")).carrier_ref
    other = FakeChannel("1732500000.99", "PJSIP/desk-00000009", ami.actions[-1])
    ami.channels[other.uniqueid] = other
    try:
        assert carrier.active_calls() == [ref]
    finally:
        hold.set()


def test_send_sms_is_unsupported(carrier: AsteriskCarrier) -> None:
    handle = carrier.send_sms(SmsRequest(1, "s1", PHONE, "みどり市", "本文"))
    assert (handle.accepted, handle.error_code) == (False, "unsupported")
    capabilities = carrier.capabilities()
    assert not capabilities.sms and not capabilities.speech_input and capabilities.voice


def test_link_lost_mid_call_reconnects_and_reconciles(
    ami: FakeAmiServer, carrier: AsteriskCarrier, log_sink: EventLog
) -> None:
    answered = threading.Event()

    def answer_and_hold(server: FakeAmiServer, channel: FakeChannel) -> None:
        server.answer(channel)
        answered.set()

    ami.behaviour = answer_and_hold
    ended = carrier.place_call(request("ends-while-down")).carrier_ref or ""
    assert answered.wait(5)
    answered.clear()
    still_up = carrier.place_call(request("survives")).carrier_ref or ""
    assert answered.wait(5)
    tracked = carrier.ledger.get(still_up)
    assert tracked is not None
    wait_for(lambda: tracked.answered)

    ami.refuse_logins = True
    ami.drop_connections()
    wait_for(lambda: not carrier.connected)
    ami.hang_up_channel(ami.channels[ended], 16)  # nobody hears this Hangup event
    ami.refuse_logins = False
    assert ami.wait_for_logins(2)

    wait_for(lambda: bool(log_sink.finals(ended)))
    assert log_sink.finals(ended) == [CallStatus.COMPLETED]
    assert log_sink.events[-1].raw == {"event": "reconciled", "reason": "channel-gone"}
    assert log_sink.finals(still_up) == []
    # events flow again on the new connection
    ami.hang_up_channel(ami.channels[still_up], 16)
    wait_for(lambda: log_sink.finals(still_up) == [CallStatus.COMPLETED])


def test_place_call_while_the_link_is_down_is_not_accepted(
    ami: FakeAmiServer, carrier: AsteriskCarrier
) -> None:
    ami.refuse_logins = True
    ami.drop_connections()
    wait_for(lambda: not carrier.connected)
    handle = carrier.place_call(request("while-down"))
    assert (handle.accepted, handle.error_code) == (False, "ami-unavailable")


def test_read_timeout_killing_the_listener_thread_is_detected(ami: FakeAmiServer) -> None:
    """The package's socket timeout kills its listener thread; we notice and reconnect."""
    settings = harness_settings(ami, 4573).model_copy(
        update={"ami_read_timeout_seconds": 0.3, "ami_keepalive_seconds": 60.0}
    )
    log_sink = EventLog()
    with AsteriskCarrier(settings, log_sink) as carrier:
        ami.mute = True  # Asterisk goes quiet: no events, no Pong
        wait_for(lambda: not carrier.connected)
        ami.mute = False
        assert ami.wait_for_logins(2)
        wait_for(lambda: carrier.connected)
        ami.behaviour = lambda server, channel: server.end_unanswered(channel, 5, 17)
        ref = carrier.place_call(request("after-timeout")).carrier_ref or ""
        wait_for(lambda: log_sink.finals(ref) == [CallStatus.BUSY])


def test_keepalive_keeps_a_quiet_link_alive(ami: FakeAmiServer) -> None:
    settings = harness_settings(ami, 4573).model_copy(
        update={"ami_read_timeout_seconds": 0.5, "ami_keepalive_seconds": 0.1}
    )
    with AsteriskCarrier(settings, EventLog()) as carrier:
        time.sleep(1.5)  # three read timeouts' worth of silence but for our pings
        assert carrier.connected
        assert ami.logins == 1
        assert any(p.get("Action") == "Ping" for p in ami.actions)


def test_a_failing_sink_does_not_kill_the_listener(
    ami: FakeAmiServer, carrier: AsteriskCarrier, log_sink: EventLog
) -> None:
    log_sink.fail_first = True
    ami.behaviour = lambda server, channel: server.end_unanswered(channel, 5, 17)
    ref = carrier.place_call(request("sink-fails")).carrier_ref or ""
    wait_for(lambda: log_sink.finals(ref) == [CallStatus.BUSY])
    assert carrier.connected and ami.logins == 1


def test_no_personal_data_in_logs_or_events(caplog: pytest.LogCaptureFixture) -> None:
    script = next(s for s in SCENARIOS if s.name == "confirms then ends")
    with caplog.at_level(logging.DEBUG), open_harness() as harness:
        sink = MemorySink()
        call = sink.expect("pii-check", context())
        harness.play(request("pii-check"), script, sink)
        _assert_no_personal_data(harness, caplog.text, [str(e.raw) for e in call.events])


def _assert_no_personal_data(harness: AsteriskHarness, logs: str, raws: list[str]) -> None:
    for secret in ("9012345678", "ヤマダ", "ヤマダ タロウ", "0415"):
        assert secret not in logs
        assert all(secret not in raw for raw in raws)
    for packet in harness.ami.actions:
        assert all("9012345678" not in v for v in packet.variables.values())


def test_pure_mappings() -> None:
    assert dial_channel("PJSIP/{national}@trunk", PHONE) == "PJSIP/09012345678@trunk"
    assert dial_channel("SIP/{e164}", PHONE) == "SIP/+819012345678"
    assert channel_id_for("a") == channel_id_for("a") != channel_id_for("b")
    assert len(channel_id_for("a")) <= 64
    assert unanswered_status(None, None) is CallStatus.FAILED
    assert unanswered_status(0, 16) is CallStatus.FAILED


def test_the_ledger_forgets_ended_calls_not_open_ones() -> None:
    ledger = CallLedger(EventLog())
    ledger.max_tracked = 4
    for number in range(4):
        ledger.track(f"r{number}", f"k{number}", 1)
    ledger.on_call_event(CallEvent("r0", datetime.now(UTC), status=CallStatus.BUSY))
    ledger.on_call_event(CallEvent("r1", datetime.now(UTC), status=CallStatus.BUSY))
    ledger.track("r4", "k4", 1)
    assert ledger.get("r0") is None and ledger.get("r1") is not None
    assert set(ledger.open_calls()) == {"r2", "r3", "r4"}


def test_close_logs_off(ami: FakeAmiServer) -> None:
    with AsteriskCarrier(harness_settings(ami, 4573), EventLog()):
        pass
    assert ami.actions[-1].get("Action") == "Logoff"


def test_a_call_answered_while_the_link_was_down_completes_on_hangup(
    ami: FakeAmiServer, carrier: AsteriskCarrier, log_sink: EventLog
) -> None:
    ringing = threading.Event()

    def ring(server: FakeAmiServer, channel: FakeChannel) -> None:
        server.channel_event("Newchannel", channel)
        ringing.set()

    ami.behaviour = ring
    ref = carrier.place_call(request("answered-unseen")).carrier_ref or ""
    assert ringing.wait(5)
    ami.refuse_logins = True
    ami.drop_connections()
    wait_for(lambda: not carrier.connected)
    ami.answer(ami.channels[ref])  # OriginateResponse Success is lost
    ami.refuse_logins = False
    assert ami.wait_for_logins(2)
    tracked = carrier.ledger.get(ref)
    assert tracked is not None
    wait_for(lambda: tracked.answered)
    ami.hang_up_channel(ami.channels[ref], 16)
    wait_for(lambda: log_sink.finals(ref) == [CallStatus.COMPLETED])
