"""The carrier port: what the dialer asks of Twilio, Asterisk or the simulator.

Requests and results are typed dataclasses. A carrier reports what happens on a call as
:class:`CallEvent` values to a :class:`CallEventSink` (the dialer's call-session service),
which answers with the IVR actions to perform next; status-only events get no actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ivr_scripts.actions import Action


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
    transfer_ok: bool | None = None
    duration_seconds: int | None = None
    attempt_key: str | None = None
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


class SmsStatus(StrEnum):
    """Message states as Twilio names them; the simulator and Asterisk map onto these."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


@dataclass(frozen=True)
class SmsStatusEvent:
    carrier_ref: str
    occurred_at: datetime
    status: SmsStatus
    error_code: str | None = None


@dataclass(frozen=True)
class InboundSms:
    """A message a resident sent us (e.g. 停止 / STOP). ``from_e164`` is personal data."""

    carrier_ref: str
    occurred_at: datetime
    from_e164: str
    body: str


class CallEventSink(Protocol):
    """The dialer's call-session service, as the carriers see it.

    A carrier adapter turns what its protocol reports (a Twilio webhook, an AMI event, an AGI
    reply, a simulated resident) into :class:`CallEvent` values and hands them here, in the
    order it received them. The answer is the IVR actions to perform next (say, gather,
    transfer, hang up); status-only events, repeats and events after the end get ``[]``.
    ``attempt_key`` (the attempt's idempotency key) or ``carrier_ref`` identifies the call.
    """

    def on_call_event(self, event: CallEvent) -> list[Action]: ...

    def on_sms_status(self, event: SmsStatusEvent) -> None: ...

    def on_inbound_sms(self, message: InboundSms) -> None: ...
