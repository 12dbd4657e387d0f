"""The carrier port: what the dialer asks of Twilio, Asterisk or the simulator.

Requests and results are typed dataclasses. A carrier reports what happens on a call as
:class:`CallEvent` values to a :class:`CallEventSink` (the dialer's call-session service),
which answers with the IVR actions to perform next; status-only events get no actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class CallStatus(StrEnum):
    """Carrier call states, named as Twilio names them; the other carriers map onto these."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
    }
)


class AnsweredBy(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Capabilities:
    voice: bool
    sms: bool
    click_to_call: bool
    answering_machine_detection: bool
    speech_input: bool
    max_calls_per_second: float


@dataclass(frozen=True)
class CallRequest:
    """Place one outbound call for one attempt; ``idempotency_key`` is unique per attempt."""

    attempt_id: int
    idempotency_key: str
    to_e164: str
    from_e164: str
    ring_timeout_seconds: int
    detect_machine: bool = True


@dataclass(frozen=True)
class CallHandle:
    accepted: bool
    carrier: str
    carrier_ref: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class SmsRequest:
    attempt_id: int
    idempotency_key: str
    to_e164: str
    sender_id: str
    body: str


@dataclass(frozen=True)
class SmsHandle:
    accepted: bool
    carrier: str
    carrier_ref: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class CallEvent:
    """Something that happened on a call, as the carrier reported it."""

    carrier_ref: str
    occurred_at: datetime
    status: CallStatus | None = None
    answered_by: AnsweredBy | None = None
    digits: str | None = None
    speech: str | None = None
    speech_confidence: float | None = None
    no_input: bool = False
    duration_seconds: int | None = None
    raw: dict[str, str] = field(default_factory=dict)


class Carrier(Protocol):
    name: str

    def capabilities(self) -> Capabilities: ...

    def place_call(self, request: CallRequest) -> CallHandle: ...

    def hang_up(self, carrier_ref: str) -> None: ...

    def send_sms(self, request: SmsRequest) -> SmsHandle: ...

    def active_calls(self) -> list[str]:
        """Carrier refs of calls the carrier still has in flight (start-up reconciliation)."""
        ...
