"""Twilio's webhooks as Twilio sends them: signed form posts, retries, disorder, garbage."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

import ivr_scripts.actions as act
from dialer.carriers.twilio import webhook_url
from dialer.carriers.twilio_webhooks import (
    SINK_THREADS,
    VOICE_PATH,
    answered_by,
    confidence,
    flow_urls,
    sink_threads,
    status_event,
    twilio_router,
    voice_event,
)
from dialer.ports import (
    AnsweredBy,
    CallEvent,
    CallStatus,
    InboundSms,
    SmsStatus,
    SmsStatusEvent,
)
from kernel.errors import ConfigurationError
from kernel.settings import Settings, load_settings
from tests.contract.scenarios import context
from tests.fakes.memory_sink import MemoryCall, MemorySink

PUBLIC = "https://dunning.example.jp"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0123456789abcdef"
KEY = "att-1-1"
SID = "CA" + "fedcba9876543210" * 2
PHONE = "+819011112222"
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


@dataclass
class RecordingLiveCalls:
    played: list[tuple[str, str]] = field(default_factory=list)

    def play_now(self, carrier_ref: str, twiml: str) -> None:
        self.played.append((carrier_ref, twiml))


@dataclass
class Twilio:
    """Signs and posts webhooks as Twilio does."""

    client: TestClient
    validator: RequestValidator = field(default_factory=lambda: RequestValidator(TOKEN))

    def post(
        self,
        path: str,
        params: dict[str, str],
        *,
        signed_url: str | None = None,
        signature: str | None = "auto",
        token: str | None = None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if signature == "auto":
            signature = self.validator.compute_signature(signed_url or PUBLIC + path, params)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        if token:
            headers["I-Twilio-Idempotency-Token"] = token
        response: httpx.Response = self.client.post(path, data=params, headers=headers)
        return response


def call_params(**extra: str) -> dict[str, str]:
    return {
        "CallSid": SID,
        "AccountSid": ACCOUNT,
        "From": "+81312345678",
        "To": PHONE,
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def settings(**twilio: object) -> Settings:
    values: dict[str, object] = {"account_sid": ACCOUNT, "auth_token": TOKEN, **twilio}
    return load_settings(environment="demo", public_base_url=PUBLIC, twilio=values)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def call(sink: MemorySink) -> MemoryCall:
    return sink.expect(KEY, context())


@pytest.fixture
def live() -> RecordingLiveCalls:
    return RecordingLiveCalls()


@pytest.fixture
def twilio(sink: MemorySink, live: RecordingLiveCalls) -> Iterator[Twilio]:
    app = FastAPI()
    app.include_router(twilio_router(sink, settings(max_webhook_body_bytes=2048), live))
    with TestClient(app) as client:
        yield Twilio(client)


def answer(twilio: Twilio) -> ET.Element:
    response = twilio.post(f"/twilio/voice?a={KEY}", call_params())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.text)


def press(twilio: Twilio, digits: str, **extra: str) -> httpx.Response:
    return twilio.post(f"/twilio/voice?a={KEY}&ev=gather", call_params(Digits=digits, **extra))


# --- signatures -----------------------------------------------------------------------------


def test_a_signed_answer_starts_the_flow_and_returns_a_japanese_gather(
    twilio: Twilio, call: MemoryCall
) -> None:
    root = answer(twilio)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "ja-JP"
    assert gather.get("action") == f"{PUBLIC}/twilio/voice?a={KEY}&ev=gather"
    assert any("ヤマダ タロウ" in (say.text or "") for say in gather.iter("Say"))
    assert call.events[0].status is CallStatus.IN_PROGRESS
    assert call.events[0].carrier_ref == SID


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
def test_missing_or_wrong_signature_is_refused_without_side_effect(
    twilio: Twilio, call: MemoryCall, signature: str | None
) -> None:
    for path in ("/twilio/voice?a=att-1-1", "/twilio/status?a=att-1-1", "/twilio/amd?a=att-1-1"):
        response = twilio.post(path, call_params(AnsweredBy="human"), signature=signature)
        assert response.status_code == 403
    assert call.events == []


def test_an_unknown_signature_algorithm_is_refused(twilio: Twilio, call: MemoryCall) -> None:
    path = f"/twilio/voice?a={KEY}"
    params = call_params()
    headers = {
        "X-Twilio-Signature": twilio.validator.compute_signature(PUBLIC + path, params),
        "X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_MD5",
    }
    assert twilio.client.post(path, data=params, headers=headers).status_code == 403
    assert call.events == []


def test_a_signature_over_other_values_is_refused(twilio: Twilio, call: MemoryCall) -> None:
    answer(twilio)
    signed = twilio.validator.compute_signature(
        f"{PUBLIC}/twilio/voice?a={KEY}&ev=gather", call_params(Digits="2")
    )
    response = twilio.post(
        f"/twilio/voice?a={KEY}&ev=gather", call_params(Digits="1"), signature=signed
    )
    assert response.status_code == 403
    assert len(call.events) == 1


def test_signature_is_checked_against_the_public_url_not_the_proxy_facing_one(
    twilio: Twilio, call: MemoryCall
) -> None:
    local = twilio.post(
        f"/twilio/voice?a={KEY}",
        call_params(),
        signed_url=f"http://testserver/twilio/voice?a={KEY}",
    )
    assert local.status_code == 403
    other_key = twilio.post(
        f"/twilio/voice?a={KEY}", call_params(), signed_url=f"{PUBLIC}/twilio/voice?a=att-9-9"
    )
    assert other_key.status_code == 403
    assert call.events == []
    assert answer(twilio).find("Gather") is not None


def test_a_public_url_with_a_port_is_accepted(sink: MemorySink, call: MemoryCall) -> None:
    app = FastAPI()
    base = "https://dunning.example.jp:8443"
    configured = load_settings(
        environment="demo",
        public_base_url=base,
        twilio={"account_sid": ACCOUNT, "auth_token": TOKEN},
    )
    app.include_router(twilio_router(sink, configured, RecordingLiveCalls()))
    with TestClient(app) as client:
        response = Twilio(client).post(
            f"/twilio/voice?a={KEY}", call_params(), signed_url=f"{base}/twilio/voice?a={KEY}"
        )
    assert response.status_code == 200
    assert len(call.events) == 1


def test_webhooks_refuse_to_start_without_an_auth_token(sink: MemorySink) -> None:
    unsigned = load_settings(environment="demo", twilio={"account_sid": ACCOUNT})
    with pytest.raises(ConfigurationError, match="twilio.auth_token"):
        twilio_router(sink, unsigned, RecordingLiveCalls())


# --- body size ------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_with_413(twilio: Twilio, call: MemoryCall) -> None:
    response = twilio.post(f"/twilio/voice?a={KEY}", call_params(SpeechResult="あ" * 2000))
    assert response.status_code == 413
    assert call.events == []


def test_an_oversized_chunked_body_is_refused_with_413(twilio: Twilio, call: MemoryCall) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"Digits=" + b"1" * 500 + b"&"

    response = twilio.client.post(
        f"/twilio/voice?a={KEY}&ev=gather",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert call.events == []


# --- unknown calls, repeats, disorder -------------------------------------------------------


def test_unknown_call_gets_a_hangup_and_nothing_happens(twilio: Twilio, sink: MemorySink) -> None:
    response = twilio.post("/twilio/voice?a=att-unknown", call_params())
    assert response.status_code == 200
    assert [child.tag for child in ET.fromstring(response.text)] == ["Hangup"]
    status = twilio.post("/twilio/status?a=att-unknown", call_params(CallStatus="completed"))
    assert status.status_code == 204
    no_key = twilio.post("/twilio/voice", call_params())
    assert [child.tag for child in ET.fromstring(no_key.text)] == ["Hangup"]
    assert sink.calls == {}


def test_a_retried_webhook_is_answered_again_without_reaching_the_sink_twice(
    twilio: Twilio, call: MemoryCall
) -> None:
    first = twilio.post(f"/twilio/voice?a={KEY}", call_params(), token="retry-1")
    again = twilio.post(f"/twilio/voice?a={KEY}", call_params(), token="retry-1")
    assert again.text == first.text
    assert len(call.events) == 1
    for _ in range(2):
        done = twilio.post(
            f"/twilio/status?a={KEY}", call_params(CallStatus="completed"), token="st-1"
        )
        assert done.status_code == 204
    assert len(call.events) == 2


def test_repeated_and_late_status_callbacks_do_not_change_the_outcome(
    twilio: Twilio, call: MemoryCall
) -> None:
    answer(twilio)
    press(twilio, "1")  # it is me
    press(twilio, "0")  # end the call
    assert call.outcome is not None and call.outcome.value == "rpc_confirmed"
    outcome = call.outcome
    for status in ("completed", "completed", "ringing", "initiated"):
        twilio.post(f"/twilio/status?a={KEY}", call_params(CallStatus=status))
    assert call.outcome == outcome
    assert call.carrier_result == "completed"


def test_final_status_before_the_last_gather_post(twilio: Twilio, call: MemoryCall) -> None:
    answer(twilio)
    twilio.post(f"/twilio/status?a={KEY}", call_params(CallStatus="completed", CallDuration="9"))
    late = press(twilio, "1")
    assert [child.tag for child in ET.fromstring(late.text)] == ["Hangup"]
    assert call.outcome is not None and call.outcome.value == "hangup_before_confirm"


def test_ringing_before_initiated_and_answered_status_are_harmless(
    twilio: Twilio, call: MemoryCall
) -> None:
    for status in ("ringing", "initiated", "in-progress", "queued"):
        assert twilio.post(f"/twilio/status?a={KEY}", call_params(CallStatus=status)).status_code
    assert [e.status for e in call.events] == [
        CallStatus.RINGING,
        CallStatus.INITIATED,
        CallStatus.QUEUED,
    ]
    assert answer(twilio).find("Gather") is not None  # the voice request starts the flow


# --- garbage input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"Digits": "abc#*"},
        {"Digits": "9" * 300},
        {"Digits": "\x00\x01"},
        {"SpeechResult": "\x00💥<Say>", "Confidence": "NaN"},
        {"SpeechResult": "はい", "Confidence": "very"},
        {"SpeechResult": "", "Confidence": "-3"},
        {"Digits": "", "SpeechResult": ""},
        {},
    ],
)
def test_garbage_input_is_handled_by_the_flow_not_a_crash(
    twilio: Twilio, call: MemoryCall, fields: dict[str, str]
) -> None:
    answer(twilio)
    response = twilio.post(f"/twilio/voice?a={KEY}&ev=gather", call_params(**fields))
    assert response.status_code == 200
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    assert not call.state.identity_confirmed


def test_no_input_redirect_reports_a_timeout(twilio: Twilio, call: MemoryCall) -> None:
    redirect = answer(twilio).find("Redirect")
    assert redirect is not None and redirect.text
    path = redirect.text.removeprefix(PUBLIC)
    again = ET.fromstring(twilio.post(path, call_params()).text)
    assert again.find("Gather") is not None  # asked once more
    assert call.events[-1].no_input
    final = ET.fromstring(twilio.post(path, call_params()).text)
    assert final.find("Hangup") is not None
    assert call.outcome is not None and call.outcome.value == "no_input"


# --- answering machines ---------------------------------------------------------------------


def test_machine_verdict_mid_flow_replaces_the_live_call_twiml(
    twilio: Twilio, call: MemoryCall, live: RecordingLiveCalls
) -> None:
    answer(twilio)  # async AMD: the greeting has started
    amd = twilio.post(f"/twilio/amd?a={KEY}", call_params(AnsweredBy="machine_end_beep"))
    assert amd.status_code == 204
    assert len(live.played) == 1
    sid, document = live.played[0]
    assert sid == SID
    root = ET.fromstring(document)
    assert root.find("Say") is not None and root.find("Hangup") is not None
    assert root.find("Gather") is None
    assert "ヤマダ" not in document
    assert call.outcome is not None and call.outcome.value == "machine"


def test_machine_verdict_after_the_resident_answered_changes_nothing(
    twilio: Twilio, call: MemoryCall, live: RecordingLiveCalls
) -> None:
    answer(twilio)
    press(twilio, "1")
    twilio.post(f"/twilio/amd?a={KEY}", call_params(AnsweredBy="machine_end_other"))
    assert live.played == []
    assert call.state.identity_confirmed


def test_human_verdict_mid_flow_changes_nothing(
    twilio: Twilio, call: MemoryCall, live: RecordingLiveCalls
) -> None:
    answer(twilio)
    response = twilio.post(f"/twilio/amd?a={KEY}", call_params(AnsweredBy="human"))
    assert response.status_code == 204
    assert live.played == []
    assert call.events[-1].answered_by is AnsweredBy.HUMAN


def test_machine_verdict_before_the_voice_request_plays_the_machine_message(
    twilio: Twilio, call: MemoryCall, live: RecordingLiveCalls
) -> None:
    twilio.post(f"/twilio/amd?a={KEY}", call_params(AnsweredBy="machine_end_silence"))
    assert len(live.played) == 1
    assert "ヤマダ" not in live.played[0][1]
    assert call.outcome is not None and call.outcome.value == "machine"


# --- SMS ------------------------------------------------------------------------------------


def test_sms_status_and_inbound_sms_reach_the_sink(twilio: Twilio, sink: MemorySink) -> None:
    sms = {"MessageSid": "SM" + "1" * 32, "AccountSid": ACCOUNT, "To": PHONE, "From": "KAKUSHI"}
    delivered = twilio.post(
        "/twilio/sms-status?a=sms-1", {**sms, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    )
    ignored = twilio.post("/twilio/sms-status?a=sms-1", {**sms, "MessageStatus": "sending"})
    assert delivered.status_code == ignored.status_code == 204
    assert sink.sms_status == [
        SmsStatusEvent(
            sms["MessageSid"], sink.sms_status[0].occurred_at, SmsStatus.UNDELIVERED, "30003"
        )
    ]
    inbound = {"MessageSid": "SM" + "2" * 32, "AccountSid": ACCOUNT, "From": PHONE, "Body": "停止"}
    reply = twilio.post("/twilio/sms-inbound", inbound)
    assert reply.status_code == 200 and ET.fromstring(reply.text).tag == "Response"
    assert sink.inbound == [
        InboundSms(inbound["MessageSid"], sink.inbound[0].occurred_at, PHONE, "停止")
    ]


def test_unsigned_inbound_sms_is_refused(twilio: Twilio, sink: MemorySink) -> None:
    params = {"MessageSid": "SM" + "3" * 32, "From": PHONE, "Body": "STOP"}
    assert twilio.post("/twilio/sms-inbound", params, signature=None).status_code == 403
    assert sink.inbound == []


# --- personal data --------------------------------------------------------------------------


def test_phone_numbers_and_speech_stay_out_of_logs_and_raw_fields(
    twilio: Twilio, call: MemoryCall, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer(twilio)
    twilio.post(f"/twilio/voice?a={KEY}&ev=gather", call_params(SpeechResult="山田です"))
    twilio.post(f"/twilio/voice?a={KEY}", call_params(), signature="bad")
    assert PHONE not in caplog.text and "山田" not in caplog.text
    for event in call.events:
        assert PHONE not in event.raw.values()
        assert "From" not in event.raw and "To" not in event.raw


# --- pure mappings --------------------------------------------------------------------------


def test_answered_by_values() -> None:
    assert answered_by("human") is AnsweredBy.HUMAN
    for machine in ("machine_start", "machine_end_beep", "machine_end_silence", "fax"):
        assert answered_by(machine) is AnsweredBy.MACHINE
    assert answered_by("unknown") is AnsweredBy.UNKNOWN
    assert answered_by(None) is None


def test_confidence_is_clamped_and_garbage_is_dropped() -> None:
    assert confidence("0.87") == pytest.approx(0.87)
    assert confidence("7") == 1.0
    assert confidence("-1") == 0.0
    assert confidence("nan") is None
    assert confidence("inf") is None
    assert confidence("x") is None


def test_voice_event_steps() -> None:
    form = call_params(Digits="1", DialCallStatus="busy")
    gathered = voice_event(form, KEY, "gather", NOW)
    assert (gathered.digits, gathered.status, gathered.no_input) == ("1", None, False)
    assert voice_event(call_params(), KEY, "gather", NOW).no_input
    assert voice_event(call_params(), KEY, "no-input", NOW).no_input
    assert voice_event(form, KEY, "dial", NOW).transfer_ok is False
    dialled = voice_event(call_params(DialCallStatus="completed"), KEY, "dial", NOW)
    assert dialled.transfer_ok is True
    hung_up = voice_event(call_params(CallStatus="completed"), KEY, "gather", NOW)
    assert hung_up.status is CallStatus.COMPLETED


def test_status_event_leaves_the_answer_to_the_voice_request() -> None:
    assert status_event(call_params(CallStatus="in-progress"), KEY, NOW) is None
    assert status_event(call_params(CallStatus="bogus"), KEY, NOW) is None
    busy = status_event(call_params(CallStatus="busy", CallDuration="0"), KEY, NOW)
    assert busy is not None and busy.status is CallStatus.BUSY and busy.duration_seconds == 0


# --- how the sink is called ------------------------------------------------------------------


class ThreadNoting(MemorySink):
    """Notes which thread took each report (a sink that does I/O must not block the loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        self.threads.append(threading.current_thread().name)
        return super().on_call_event(event)


def _answer_and_press(sink: MemorySink, *keys: str) -> MemoryCall:
    """One call through a router over ``sink``: answered, then ``keys`` pressed."""
    call = sink.expect(KEY, context())
    app = FastAPI()
    app.include_router(twilio_router(sink, settings(), RecordingLiveCalls()))
    with TestClient(app) as client:
        twilio = Twilio(client)
        answer(twilio)
        for key in keys:
            assert press(twilio, key).status_code == 200
    return call


def test_a_blocking_sink_runs_on_the_routers_threads_in_arrival_order() -> None:
    sink = ThreadNoting()
    call = _answer_and_press(sink, "1", "0")
    assert [e.digits for e in call.events] == [None, "1", "0"]
    assert sink.threads and all(name.startswith("twilio-sink") for name in sink.threads)


def test_a_sink_that_only_computes_runs_on_the_event_loop() -> None:
    sink = ThreadNoting()
    sink.expect(KEY, context())
    app = FastAPI()
    app.include_router(twilio_router(sink, settings(), RecordingLiveCalls(), sink_blocks=False))
    with TestClient(app) as client:
        answer(Twilio(client))
    assert sink.threads and not any(name.startswith("twilio-sink") for name in sink.threads)


class LoopBatching(ThreadNoting):
    """A sink that batches on the event loop (as the call session on SQLite does) unless
    ``declines``; what it declines comes through its queue, answered from another thread."""

    batches_inline = True

    def __init__(self, declines: bool) -> None:
        super().__init__()
        self.declines = declines
        self.batches: list[int] = []
        self.queued = 0

    def handle_now(self, events: Sequence[CallEvent]) -> list[list[act.Action]] | None:
        if self.declines:
            return None
        self.batches.append(len(events))
        return [self.on_call_event(event) for event in events]

    def queue_call_event(
        self, event: CallEvent, reply: Callable[[list[act.Action] | BaseException], None]
    ) -> None:
        self.queued += 1
        threading.Thread(target=lambda: reply(self.on_call_event(event))).start()


@pytest.mark.parametrize("declines", [False, True])
def test_a_sink_that_batches_on_the_loop_gets_the_reports_there_or_through_its_queue(
    declines: bool,
) -> None:
    sink = LoopBatching(declines)
    call = _answer_and_press(sink, "1")
    assert [e.digits for e in call.events] == [None, "1"]
    assert sink.queued == (2 if declines else 0)
    assert sink.batches == ([] if declines else [1, 1])
    assert not any(name.startswith("twilio-sink") for name in sink.threads)


def test_sqlite_gets_one_sink_thread_a_server_database_several() -> None:
    assert sink_threads("sqlite:///var/dunning.db") == 1
    assert sink_threads("postgresql+psycopg://dunning@db/dunning") == SINK_THREADS > 1


@pytest.mark.parametrize("key", ["k-1-0", "a b&c=d/é", None])
def test_flow_urls_are_the_voice_url_with_each_step(key: str | None) -> None:
    urls = flow_urls(PUBLIC + "/", key)
    for step, url in (("gather", urls.gather), ("no-input", urls.no_input), ("dial", urls.dial)):
        assert url == webhook_url(PUBLIC, VOICE_PATH, key, ev=step)
