"""The Twilio adapter in the contract suite: fake REST server + signed webhooks.

``open_harness()`` starts :class:`~tests.fakes.twilio_rest.FakeTwilio`, builds a
:class:`~dialer.carriers.twilio.TwilioCarrier` pointed at it, and plays each script the way
Twilio would: the call is created over REST, then status callbacks, the voice request on
answer, the async AMD verdict, ``<Gather>`` posts (Digits / SpeechResult), the ``<Redirect>``
after a silent gather, and the final status, all signed and sent to ``twilio_router`` mounted
in a FastAPI app. The public base URL differs from the app's own address, as behind a proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.testclient import TestClient

from dialer.carriers.twilio import TwilioCarrier
from dialer.carriers.twilio_webhooks import twilio_router
from dialer.ports import CallEventSink, CallRequest
from kernel.settings import Settings, load_settings
from tests.contract.scenarios import HangUp, Press, ResidentInput, ResidentScript, Silence, Speak
from tests.fakes.twilio_rest import FakeTwilio, TwilioActor

PUBLIC_BASE_URL = "https://dunning.example.jp"
MACHINE_VERDICT = "machine_end_beep"
UNANSWERED = {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}


def twilio_settings(fake: FakeTwilio, async_amd: bool = True) -> Settings:
    return load_settings(
        environment="demo",
        public_base_url=PUBLIC_BASE_URL,
        twilio={
            "account_sid": fake.account_sid,
            "auth_token": fake.auth_token,
            "from_number": "+81312345678",
            "api_base_url": fake.base_url,
            "async_amd": async_amd,
        },
    )


def webhook_app(sink: CallEventSink, settings: Settings, carrier: TwilioCarrier) -> FastAPI:
    app = FastAPI()
    app.include_router(twilio_router(sink, settings, live_calls=carrier))
    return app


@dataclass
class TwilioHarness:
    fake: FakeTwilio
    settings: Settings
    carrier: TwilioCarrier

    def play(self, request: CallRequest, script: ResidentScript, sink: CallEventSink) -> None:
        handle = self.carrier.place_call(request)
        assert handle.accepted and handle.carrier_ref, handle.error_message
        sid = handle.carrier_ref
        with TestClient(webhook_app(sink, self.settings, self.carrier)) as client:
            actor = TwilioActor(self.fake, client)
            actor.status(sid, "initiated")
            actor.status(sid, "ringing")
            if script.answer in UNANSWERED:
                actor.status(sid, UNANSWERED[script.answer])
                return
            self._answer(actor, sid, script)
            _act_out(actor, sid, script.inputs)
            actor.status(sid, "completed", CallDuration="42")

    def _answer(self, actor: TwilioActor, sid: str, script: ResidentScript) -> None:
        verdict = MACHINE_VERDICT if script.answer == "machine" else "human"
        actor.status(sid, "in-progress")
        if self.settings.twilio.async_amd:
            actor.answer(sid)  # the flow starts at once; the verdict follows
            actor.amd(sid, verdict)
        else:
            actor.answer(sid, AnsweredBy=verdict)  # Twilio waited for the verdict


def _act_out(actor: TwilioActor, sid: str, inputs: tuple[ResidentInput, ...]) -> None:
    for item in inputs:
        if isinstance(item, HangUp) or actor.current(sid).gather_url is None:
            return
        if isinstance(item, Press):
            actor.gather(sid, Digits=item.digits)
        elif isinstance(item, Speak):
            actor.gather(sid, SpeechResult=item.text, Confidence=f"{item.confidence:.2f}")
        elif isinstance(item, Silence):
            actor.time_out(sid)


@contextmanager
def open_harness(async_amd: bool = True) -> Iterator[TwilioHarness]:
    """A Twilio harness for the contract suite (``async_amd`` as configured by default)."""
    with FakeTwilio() as fake:
        settings = twilio_settings(fake, async_amd=async_amd)
        yield TwilioHarness(fake, settings, TwilioCarrier(settings))
