"""TwilioCarrier against the fake Twilio REST server (which checks Twilio's OpenAPI spec)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dialer.carriers.twilio import TwilioCarrier, TwilioUnavailable
from dialer.carriers.twilio_webhooks import twilio_router
from dialer.ports import CallRequest, SmsRequest, SmsStatus
from kernel.errors import ConfigurationError
from kernel.settings import load_settings
from tests.contract.harness_twilio import PUBLIC_BASE_URL, twilio_settings
from tests.fakes.memory_sink import MemorySink
from tests.fakes.twilio_rest import FakeTwilio, TwilioActor

PHONE = "+819012345678"
CALLS = "/2010-04-01/Accounts/{account}/Calls.json"


def request(key: str = "att-3-1", to: str = PHONE) -> CallRequest:
    return CallRequest(3, key, to, "+81312345678", ring_timeout_seconds=25)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
def carrier(fake: FakeTwilio) -> TwilioCarrier:
    return TwilioCarrier(twilio_settings(fake))


def rest(fake: FakeTwilio, token: str | None = None) -> httpx.Client:
    auth = (fake.account_sid, token or fake.auth_token)
    return httpx.Client(base_url=fake.base_url, auth=auth)


# --- place_call -----------------------------------------------------------------------------


def test_place_call_asks_for_the_flow_status_events_and_async_amd(
    fake: FakeTwilio, carrier: TwilioCarrier
) -> None:
    handle = carrier.place_call(request())
    assert handle.accepted and handle.carrier == "twilio"
    assert handle.carrier_ref in fake.calls
    sent = fake.calls[handle.carrier_ref or ""].params
    assert sent["To"] == [PHONE]
    assert sent["Url"] == [f"{PUBLIC_BASE_URL}/twilio/voice?a=att-3-1"]
    assert sent["StatusCallback"] == [f"{PUBLIC_BASE_URL}/twilio/status?a=att-3-1"]
    assert sent["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert sent["Timeout"] == ["25"]
    assert sent["MachineDetection"] == ["DetectMessageEnd"]
    assert sent["AsyncAmd"] == ["true"]
    assert sent["AsyncAmdStatusCallback"] == [f"{PUBLIC_BASE_URL}/twilio/amd?a=att-3-1"]
    assert fake.violations == []


def test_callback_urls_carry_no_personal_data(fake: FakeTwilio, carrier: TwilioCarrier) -> None:
    handle = carrier.place_call(request())
    sent = fake.calls[handle.carrier_ref or ""].params
    for name in ("Url", "StatusCallback", "AsyncAmdStatusCallback"):
        assert PHONE not in sent[name][0] and "9012345678" not in sent[name][0]


def test_without_machine_detection_no_amd_is_requested(
    fake: FakeTwilio, carrier: TwilioCarrier
) -> None:
    plain = CallRequest(3, "att-3-2", PHONE, "+81312345678", 25, detect_machine=False)
    sent = fake.calls[carrier.place_call(plain).carrier_ref or ""].params
    assert "MachineDetection" not in sent and "AsyncAmd" not in sent


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (500, "20500", "server error"),
        (503, "20500", "server error"),
        (429, "20429", "rate limit"),
    ],
)
def test_server_errors_and_rate_limits_are_refused_handles(
    fake: FakeTwilio, carrier: TwilioCarrier, status: int, code: str, words: str
) -> None:
    fake.fail_next(status)
    handle = carrier.place_call(request())
    assert not handle.accepted and handle.carrier_ref is None
    assert handle.error_code == code
    assert handle.error_message is not None and words in handle.error_message
    assert str(status) in handle.error_message
    assert carrier.place_call(request()).accepted  # the fault was one request only


def test_a_slow_twilio_is_a_timeout(fake: FakeTwilio) -> None:
    settings = load_settings(
        environment="demo",
        public_base_url=PUBLIC_BASE_URL,
        twilio={
            "account_sid": fake.account_sid,
            "auth_token": fake.auth_token,
            "api_base_url": fake.base_url,
            "request_timeout_seconds": 0.2,
        },
    )
    fake.delay_next(1.0)
    handle = TwilioCarrier(settings).place_call(request())
    assert (handle.accepted, handle.error_code) == (False, "timeout")


def test_an_unreachable_twilio_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        environment="demo",
        twilio={
            "account_sid": "AC" + "0" * 32,
            "auth_token": "token",
            "api_base_url": f"http://127.0.0.1:{port}",
        },
    )
    carrier = TwilioCarrier(settings)
    handle = carrier.place_call(request())
    assert (handle.accepted, handle.error_code) == (False, "network")
    with pytest.raises(TwilioUnavailable):
        carrier.active_calls()


def test_a_refused_number_is_reported_without_echoing_it(carrier: TwilioCarrier) -> None:
    handle = carrier.place_call(request(to="090-1234-5678"))
    assert (handle.accepted, handle.error_code) == (False, "21211")
    assert handle.error_message is not None
    assert "1234" not in handle.error_message and "090" not in handle.error_message


def test_missing_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="twilio.account_sid"):
        TwilioCarrier(load_settings(environment="demo"))


# --- hang_up, active_calls, SMS --------------------------------------------------------------


def test_hang_up_completes_the_call_and_active_calls_follow(
    fake: FakeTwilio, carrier: TwilioCarrier
) -> None:
    first = carrier.place_call(request("att-3-1")).carrier_ref or ""
    second = carrier.place_call(request("att-4-1")).carrier_ref or ""
    fake.calls[second].status = "in-progress"
    assert sorted(carrier.active_calls()) == sorted([first, second])
    carrier.hang_up(second)
    assert fake.calls[second].status == "completed"
    assert carrier.active_calls() == [first]
    carrier.hang_up("CA" + "0" * 32)  # unknown to Twilio: logged, not raised
    assert fake.violations == []


def test_send_sms_and_its_signed_status_callback(fake: FakeTwilio, carrier: TwilioCarrier) -> None:
    sms = SmsRequest(5, "sms-5-1", PHONE, "KAKUSHI", "みどり市納税課です。")
    handle = carrier.send_sms(sms)
    assert handle.accepted and handle.carrier_ref in fake.messages
    sent = fake.messages[handle.carrier_ref or ""].params
    assert sent["StatusCallback"] == [f"{PUBLIC_BASE_URL}/twilio/sms-status?a=sms-5-1"]
    assert sent["Body"] == ["みどり市納税課です。"]
    sink = MemorySink()
    app = FastAPI()
    app.include_router(twilio_router(sink, carrier.settings, live_calls=carrier))
    with TestClient(app) as client:
        TwilioActor(fake, client).sms_status(handle.carrier_ref or "", "delivered")
    assert [event.status for event in sink.sms_status] == [SmsStatus.DELIVERED]


def test_sms_errors_are_refused_handles(fake: FakeTwilio, carrier: TwilioCarrier) -> None:
    fake.fail_next(503)
    handle = carrier.send_sms(SmsRequest(5, "sms-5-2", PHONE, "KAKUSHI", "本文"))
    assert (handle.accepted, handle.error_code) == (False, "20500")


# --- the fake holds requests to Twilio's OpenAPI description ----------------------------------


def _create(fake: FakeTwilio, client: httpx.Client, **fields: str | list[str]) -> httpx.Response:
    form: dict[str, str | list[str]] = {"To": PHONE, "From": "+81312345678", **fields}
    return client.post(CALLS.format(account=fake.account_sid), data=form)


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"Url": "https://x.example/v", "MachineDetection": "Maybe"}, "MachineDetection"),
        (
            {"Url": "https://x.example/v", "StatusCallbackEvent": ["answered", "hungup"]},
            "StatusCallbackEvent",
        ),
        ({"Url": "https://x.example/v", "Timeout": "soon"}, "Timeout"),
        ({"Url": "https://x.example/v", "StatusCallbackMethod": "PUT"}, "StatusCallbackMethod"),
        ({"Url": "https://x.example/v", "RingTimeout": "30"}, "RingTimeout"),
    ],
)
def test_the_fake_rejects_requests_that_break_the_spec(
    fake: FakeTwilio, fields: dict[str, str | list[str]], complaint: str
) -> None:
    with rest(fake) as client:
        answer = _create(fake, client, **fields)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == 20001 and body["status"] == 400
    assert complaint in body["message"]
    assert body["more_info"].startswith("https://www.twilio.com/docs/errors/")
    assert fake.calls == {}
    assert len(fake.violations) == 1


def test_the_fake_requires_required_parameters(fake: FakeTwilio) -> None:
    with rest(fake) as client:
        answer = client.post(CALLS.format(account=fake.account_sid), data={"To": PHONE})
    assert answer.status_code == 400 and "From" in answer.json()["message"]


def test_the_fake_checks_the_account_sid_pattern_and_the_path(fake: FakeTwilio) -> None:
    with rest(fake) as client:
        bad_sid = client.get("/2010-04-01/Accounts/AC123/Calls.json")
        no_such = client.get(f"/2010-04-01/Accounts/{fake.account_sid}/Phones.json")
        bad_call = client.get(f"/2010-04-01/Accounts/{fake.account_sid}/Calls/XX1.json")
    assert bad_sid.status_code == 400 and "AccountSid" in bad_sid.json()["message"]
    assert no_such.status_code == 404 and no_such.json()["code"] == 20404
    assert bad_call.status_code == 400 and "Sid" in bad_call.json()["message"]


def test_the_fake_checks_basic_auth(fake: FakeTwilio) -> None:
    with rest(fake, token="wrong-token") as client:
        answer = _create(fake, client, Url="https://x.example/v")
    assert answer.status_code == 401 and answer.json()["code"] == 20003
    other = base64.b64encode(f"AC{'1' * 32}:{fake.auth_token}".encode()).decode()
    with httpx.Client(base_url=fake.base_url) as client:
        answer = client.post(
            CALLS.format(account=fake.account_sid),
            data={"To": PHONE, "From": "+81312345678", "Url": "https://x.example/v"},
            headers={"Authorization": f"Basic {other}"},
        )
    assert answer.status_code == 401


def test_the_fake_accepts_a_valid_request_and_can_be_fetched(fake: FakeTwilio) -> None:
    with rest(fake) as client:
        created = _create(
            fake,
            client,
            Url="https://x.example/v",
            StatusCallbackEvent=["initiated", "completed"],
            MachineDetection="Enable",
        )
        assert created.status_code == 201
        sid = created.json()["sid"]
        fetched = client.get(f"/2010-04-01/Accounts/{fake.account_sid}/Calls/{sid}.json")
    assert fetched.status_code == 200 and fetched.json()["status"] == "queued"
    assert fake.violations == []


def test_the_fake_plays_messages_fetch_update_and_list(
    fake: FakeTwilio, carrier: TwilioCarrier
) -> None:
    sid = carrier.send_sms(SmsRequest(6, "sms-6-1", PHONE, "KAKUSHI", "本文")).carrier_ref
    messages = f"/2010-04-01/Accounts/{fake.account_sid}/Messages"
    with rest(fake) as client:
        assert client.get(f"{messages}/{sid}.json").json()["status"] == "queued"
        redacted = client.post(f"{messages}/{sid}.json", data={"Body": ""})
        bad_status = client.post(f"{messages}/{sid}.json", data={"Status": "delivered"})
        listed = client.get(f"{messages}.json").json()["messages"]
    assert redacted.status_code == 200 and redacted.json()["body"] == ""
    assert bad_status.status_code == 400 and "Status" in bad_status.json()["message"]
    assert [row["sid"] for row in listed] == [sid]
