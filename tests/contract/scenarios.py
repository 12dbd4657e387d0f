"""Scenarios every carrier adapter must play with the same outcome (the contract suite).

A :class:`ResidentScript` says how the called party behaves; a :class:`CarrierHarness` (one
per adapter: simulator, Twilio against its fake REST server and signed webhooks, Asterisk
against the fake AMI server and a FastAGI client) places a call through the adapter's
``place_call``, plays the script through the adapter's real protocol, and hands every event to
the given sink. The suite then expects the same outcome code from every adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from dialer.ports import CallEventSink, CallRequest, Carrier
from ivr_scripts.model import CallContext, OutcomeCode
from kernel.models.enums import DisclosureLevel

Answer = Literal["human", "machine", "busy", "no-answer", "failed"]


@dataclass(frozen=True)
class Press:
    digits: str


@dataclass(frozen=True)
class Speak:
    text: str
    confidence: float = 0.9


@dataclass(frozen=True)
class Silence:
    """Let the gather time out."""


@dataclass(frozen=True)
class HangUp:
    """The resident puts the phone down."""


ResidentInput = Press | Speak | Silence | HangUp


@dataclass(frozen=True)
class ResidentScript:
    name: str
    answer: Answer
    inputs: tuple[ResidentInput, ...]
    expected: OutcomeCode | None  # None: no outcome (the call never reached the flow)
    expected_carrier_result: str | None = None
    needs_speech: bool = False


class CarrierHarness(Protocol):
    """Drives one adapter through one scenario; built per test by the adapter's fixture."""

    carrier: Carrier

    def play(self, request: CallRequest, script: ResidentScript, sink: CallEventSink) -> None:
        """Place ``request`` through ``carrier`` and act out ``script`` until the call ends."""
        ...


def context(disclosure: DisclosureLevel = DisclosureLevel.NOTICE) -> CallContext:
    return CallContext(
        municipality="みどり市",
        municipality_kana="ミドリシ",
        section="納税課",
        callback_number="0120-000-000",
        name_kana="ヤマダ タロウ",
        disclosure=disclosure,
        birth_mmdd="0415",
        mobile=True,
        payment_methods=("コンビニ", "口座振替"),
    )


SCENARIOS: tuple[ResidentScript, ...] = (
    ResidentScript(
        "says already paid", "human", (Press("1"), Press("3")), OutcomeCode.PAID_CLAIMED
    ),
    ResidentScript(
        "asks not to be called", "human", (Press("1"), Press("5")), OutcomeCode.DO_NOT_CALL
    ),
    ResidentScript(
        "not the person, not their number",
        "human",
        (Press("2"), Press("9")),
        OutcomeCode.WRONG_NUMBER,
    ),
    ResidentScript(
        "confirms then ends", "human", (Press("1"), Press("0")), OutcomeCode.RPC_CONFIRMED
    ),
    ResidentScript("not the person", "human", (Press("2"),), OutcomeCode.WRONG_PARTY),
    ResidentScript("silence twice", "human", (Silence(), Silence()), OutcomeCode.NO_INPUT),
    ResidentScript(
        "hangs up before confirming", "human", (HangUp(),), OutcomeCode.HANGUP_BEFORE_CONFIRM
    ),
    ResidentScript("answering machine", "machine", (), OutcomeCode.MACHINE),
    ResidentScript("busy", "busy", (), None, expected_carrier_result="busy"),
    ResidentScript("no answer", "no-answer", (), None, expected_carrier_result="no-answer"),
    ResidentScript(
        "confirms by speech",
        "human",
        (Speak("はい"), Press("0")),
        OutcomeCode.RPC_CONFIRMED,
        needs_speech=True,
    ),
)
