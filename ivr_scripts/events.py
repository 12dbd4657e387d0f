"""What a carrier reports on a call, as the engine consumes it (typed, never dicts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kernel.errors import InvalidInput

AnsweredBy = Literal["human", "machine", "unknown"]


@dataclass(frozen=True)
class CallAnswered:
    """The call was answered; ``unknown`` (no machine detection result) is treated as human."""

    answered_by: AnsweredBy = "human"

    def __post_init__(self) -> None:
        if self.answered_by not in ("human", "machine", "unknown"):
            raise InvalidInput(
                f"answered_by must be human, machine or unknown: {self.answered_by!r}"
            )


@dataclass(frozen=True)
class Digits:
    """DTMF keys pressed, as the carrier collected them (may be garbage: validated later)."""

    digits: str


@dataclass(frozen=True)
class Speech:
    """Recognized speech and the recognizer's confidence in [0, 1]."""

    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class NoInput:
    """The gather timed out with neither keys nor speech."""


@dataclass(frozen=True)
class Hangup:
    """The resident hung up (or the line dropped)."""


@dataclass(frozen=True)
class TransferResult:
    """How a transfer to the operator ended: ``ok`` means the resident reached an operator."""

    ok: bool


Event = CallAnswered | Digits | Speech | NoInput | Hangup | TransferResult
