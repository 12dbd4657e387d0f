"""What the engine asks a carrier to do (TwiML verbs, AGI commands, simulated events).

Frozen dataclasses, never dicts. Texts in :class:`Say` are already rendered for the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ivr_scripts.model import OutcomeCode, TimeBand

InputMode = Literal["dtmf", "speech"]


@dataclass(frozen=True)
class Say:
    """``personal``: the text holds a value of this resident (the name, the receivables), so
    it must not outlive the call anywhere (no cache keeps it); not part of equality."""

    text: str
    language: str
    personal: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Gather:
    """Wait for input; the engine expects Digits, Speech or NoInput next."""

    input: frozenset[InputMode]
    num_digits: int | None
    timeout_s: int
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transfer:
    """Bridge the call to a free operator; the engine expects a TransferResult next."""

    target: Literal["operator"] = "operator"


@dataclass(frozen=True)
class Hangup:
    """End the call. Nothing follows it."""


@dataclass(frozen=True)
class RecordOutcome:
    """The call's single outcome; ``detail`` carries no personal data (step names, flags)."""

    code: OutcomeCode
    detail: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class RequestSms:
    """Send the approved SMS template (R-7) to this (mobile) number."""

    template: str


@dataclass(frozen=True)
class MarkWrongNumber:
    """The number does not belong to the person: stop using it."""


@dataclass(frozen=True)
class AddDoNotCall:
    """The resident asked not to receive automated calls any more."""


@dataclass(frozen=True)
class RequestCallback:
    """Queue an operator callback in the chosen time band."""

    time_band: TimeBand


Action = (
    Say
    | Gather
    | Transfer
    | Hangup
    | RecordOutcome
    | RequestSms
    | MarkWrongNumber
    | AddDoNotCall
    | RequestCallback
)
