"""The Asterisk adapter in the contract suite: fake AMI server + our FastAGI server.

``play`` places the call through :class:`AsteriskCarrier` (AMI ``Originate``); the fake AMI
server then acts the resident out as Asterisk reports it: busy -> ``Hangup`` cause 17 and
``OriginateResponse`` Failure reason 5; no answer -> cause 19, reason 3; failed -> cause 1,
reason 0; answered -> ``OriginateResponse`` Success, then a FastAGI connection from
:class:`FakeAsteriskAgi` carrying the Originate's channel variables and the AMD verdict as
``agi_arg_1`` (``AMDSTATUS``: ``HUMAN`` or ``MACHINE``, as ``AMD()`` sets it), and finally
``Hangup`` cause 16. Key presses answer ``GET DATA``; silence is a ``(timeout)``; a hang-up
is Asterisk's ``HANGUP`` line. Speech input is not supported (capabilities say so).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from dialer.carriers.asterisk import AsteriskCarrier, channel_id_for
from dialer.carriers.fastagi import FastAgiServer
from dialer.carriers.tts import PromptStore
from dialer.ports import CallEvent, CallEventSink, CallRequest, InboundSms, SmsStatusEvent
from ivr_scripts.actions import Action
from kernel.settings import AsteriskSettings
from tests.contract.scenarios import HangUp, Press, ResidentScript, Silence, Speak
from tests.fakes.agi_client import HANG_UP, TIMEOUT, AgiTranscript, FakeAsteriskAgi
from tests.fakes.ami_server import FakeAmiServer, FakeChannel

CAMPAIGN_ID = 7
# A stand-in TTS engine: writes a short silent 8 kHz WAV to argv[1] (the text is argv[2]).
FAKE_TTS = (
    "import sys, wave\n"
    "w = wave.open(sys.argv[1], 'wb')\n"
    "w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)\n"
    "w.writeframes(bytes(1600)); w.close()\n"
)
UNANSWERED = {"busy": (5, 17), "no-answer": (3, 19), "failed": (0, 1)}


def fake_tts_command() -> list[str]:
    return [sys.executable, "-c", FAKE_TTS, "{out}", "{text}"]


class ForwardingSink:
    """The sink the carrier is built with; each ``play`` points it at that test's sink."""

    def __init__(self) -> None:
        self.target: CallEventSink | None = None

    def on_call_event(self, event: CallEvent) -> list[Action]:
        return self.target.on_call_event(event) if self.target else []

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        if self.target:
            self.target.on_sms_status(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        if self.target:
            self.target.on_inbound_sms(message)


def keypad_for(script: ResidentScript) -> list[str]:
    keys: list[str] = []
    for item in script.inputs:
        if isinstance(item, Press):
            keys.append(item.digits)
        elif isinstance(item, Silence | Speak):
            keys.append(TIMEOUT)
        elif isinstance(item, HangUp):
            keys.append(HANG_UP)
    return keys


@dataclass
class AsteriskHarness:
    carrier: AsteriskCarrier
    ami: FakeAmiServer
    agi: FastAgiServer
    forward: ForwardingSink
    var_dir: Path
    transcripts: list[AgiTranscript] = field(default_factory=list)

    def play(self, request: CallRequest, script: ResidentScript, sink: CallEventSink) -> None:
        self.forward.target = sink
        self.ami.behaviour = lambda server, channel: self._act(channel, script)
        started = len(self.ami.call_threads)
        handle = self.carrier.place_call(request)
        assert handle.accepted, handle
        deadline = time.monotonic() + 5
        while len(self.ami.call_threads) == started and time.monotonic() < deadline:
            time.sleep(0.005)
        sessions = self.agi.sessions_finished
        for thread in self.ami.call_threads[started:]:
            thread.join(timeout=15)
        self.wait_until_final(channel_id_for(request.idempotency_key))
        if script.answer not in UNANSWERED:  # let our side of the AGI session finish too
            deadline = time.monotonic() + 10
            while self.agi.sessions_finished == sessions and time.monotonic() < deadline:
                time.sleep(0.005)

    def wait_until_final(self, ref: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            call = self.carrier.ledger.get(ref)
            if call is not None and call.final:
                return
            time.sleep(0.01)
        raise AssertionError("the call never reached a final status")

    def _act(self, channel: FakeChannel, script: ResidentScript) -> None:
        if script.answer in UNANSWERED:
            reason, cause = UNANSWERED[script.answer]
            self.ami.end_unanswered(channel, reason, cause)
            return
        self.ami.answer(channel)
        self.transcripts.append(
            self.agi_session(channel, script.answer.upper(), keypad_for(script)).run()
        )
        self.ami.hang_up_channel(channel, 16)

    def agi_session(self, channel: FakeChannel, amd: str, keypad: list[str]) -> FakeAsteriskAgi:
        return FakeAsteriskAgi(
            "127.0.0.1",
            self.agi.port,
            uniqueid=channel.uniqueid,
            channel=channel.name,
            variables=channel.originate.variables,
            args=(amd,),
            keypad=keypad,
            on_keypress=lambda digits: self.ami.dtmf(channel, digits),
        )


def harness_settings(ami: FakeAmiServer, agi_port: int) -> AsteriskSettings:
    return AsteriskSettings(
        ami_port=ami.port,
        ami_username=ami.username,
        ami_secret=SecretStr(ami.secret),
        agi_port=agi_port,
        ami_read_timeout_seconds=5.0,
        ami_keepalive_seconds=1.0,
        reconnect_initial_seconds=0.05,
        reconnect_max_seconds=0.5,
    )


@contextmanager
def open_harness() -> Iterator[AsteriskHarness]:
    with tempfile.TemporaryDirectory() as tmp, FakeAmiServer() as ami:
        var_dir = Path(tmp)
        forward = ForwardingSink()
        prompts = PromptStore(var_dir, fake_tts_command())
        agi = FastAgiServer(forward, prompts, lambda key: CAMPAIGN_ID, port=0).start()
        carrier = AsteriskCarrier(harness_settings(ami, agi.port), forward)
        agi.sink = carrier.ledger
        try:
            with carrier:
                yield AsteriskHarness(carrier, ami, agi, forward, var_dir)
        finally:
            agi.stop()
