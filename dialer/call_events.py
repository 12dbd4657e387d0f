"""From carrier reports to IVR engine events: one pure mapping every carrier shares.

A :class:`~dialer.ports.CallEvent` may carry a status change, an answering-machine verdict,
input (keys or speech), a gather timeout or a transfer result. :func:`to_ivr_event` says which
engine event, if any, it means for a call in the given phase, so Twilio, Asterisk and the
simulator drive the flow identically. Events that only report progress (queued, ringing) or
that arrive after the end map to ``None``.
"""

from __future__ import annotations

from enum import StrEnum

import ivr_scripts.events as ev
from dialer.ports import AnsweredBy, CallEvent, CallStatus


class CallPhase(StrEnum):
    """Where a call stands from the dialer's point of view."""

    DIALING = "dialing"  # placed, not answered yet
    IN_FLOW = "in_flow"  # answered, the IVR flow is running
    ENDED = "ended"  # a final status was seen


# Carrier call results that end a call before anyone answered, as outcome-less carrier results.
UNANSWERED_RESULTS: dict[CallStatus, str] = {
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "no-answer",
    CallStatus.FAILED: "failed",
    CallStatus.CANCELED: "canceled",
}


def to_ivr_event(event: CallEvent, phase: CallPhase) -> ev.Event | None:
    """The engine event ``event`` stands for while the call is in ``phase`` (None: nothing)."""
    if phase is CallPhase.ENDED:
        return None
    if phase is CallPhase.DIALING:
        return _answered(event)
    if event.status is not None and event.status.is_final:
        return ev.Hangup()
    if event.answered_by is AnsweredBy.MACHINE and not _carries_input(event):
        return ev.CallAnswered(answered_by="machine")  # a late (asynchronous) AMD verdict
    if event.transfer_ok is not None:
        return ev.TransferResult(ok=event.transfer_ok)
    if event.digits:
        return ev.Digits(event.digits)
    if event.speech is not None and event.speech.strip():
        confidence = 1.0 if event.speech_confidence is None else event.speech_confidence
        return ev.Speech(event.speech, min(max(confidence, 0.0), 1.0))
    if event.no_input or event.digits == "" or event.speech is not None:
        return ev.NoInput()
    return None


def may_step_the_flow(event: CallEvent) -> bool:
    """Whether ``event`` can step a call's flow in some phase (an answer, input, a transfer
    result): its call's context is worth opening ahead. Progress and final statuses are not."""
    return _answered(event) is not None or _carries_input(event) or event.transfer_ok is not None


def _carries_input(event: CallEvent) -> bool:
    return bool(event.digits) or event.speech is not None or event.no_input


def _answered(event: CallEvent) -> ev.Event | None:
    """A call being dialed starts its flow when it is answered (in progress or AMD verdict)."""
    if event.status is CallStatus.IN_PROGRESS or event.answered_by is not None:
        verdict = event.answered_by or AnsweredBy.UNKNOWN
        return ev.CallAnswered(answered_by=verdict.value)
    return None


def next_phase(event: CallEvent, phase: CallPhase) -> CallPhase:
    """The phase after ``event``: answered calls enter the flow, final statuses end it."""
    if phase is CallPhase.ENDED or (event.status is not None and event.status.is_final):
        return CallPhase.ENDED
    if phase is CallPhase.DIALING and _answered(event) is not None:
        return CallPhase.IN_FLOW
    return phase


def carrier_result(event: CallEvent) -> str | None:
    """The raw carrier result recorded beside the outcome code (e.g. ``busy``, ``completed``)."""
    if event.status is None or not event.status.is_final:
        return None
    return UNANSWERED_RESULTS.get(event.status, event.status.value)
