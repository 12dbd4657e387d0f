"""What the IVR actions change besides the attempt: callbacks, do-not-call, wrong numbers, SMS.

:class:`CallEffects` applies an IVR step's actions to the database in the call session's unit
of work: the outcome code on the attempt, a callback request due in the chosen time band
inside the calling window (:func:`callback_due`), a do-not-call entry by the number's digest
(the number stops being used everywhere), a phone marked wrong, an SMS follow-up attempt.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import ivr_scripts.actions as act
from dialer.clock import Clock
from dialer.live_attempts import LiveAttempt
from ivr_scripts.model import TimeBand
from kernel import audit
from kernel.aggregates import record_callback_requested
from kernel.calendar import TOKYO, CallingWindow
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Channel,
    DoNotCall,
    Phone,
    PhoneStatus,
)

ACTOR = "ivr"
_BAND_START_HOUR = {TimeBand.MORNING: 0, TimeBand.AFTERNOON: 12, TimeBand.EVENING: 17}


class CallEffects:
    """Applies the side effects of IVR actions (the clock and window date callbacks)."""

    def __init__(self, clock: Clock, window: CallingWindow) -> None:
        self._clock = clock
        self._window = window

    def apply(self, session: Session, attempt: LiveAttempt, actions: list[act.Action]) -> None:
        for action in actions:
            if isinstance(action, act.RecordOutcome) and attempt.outcome_code is None:
                attempt.update(outcome_code=action.code.value)
            elif isinstance(action, act.RequestCallback):
                self._callback(session, attempt, action.time_band)
            elif isinstance(action, act.AddDoNotCall):
                self._do_not_call(session, attempt)
            elif isinstance(action, act.MarkWrongNumber):
                self._wrong_number(session, attempt)
            elif isinstance(action, act.RequestSms):
                self._sms_follow_up(session, attempt)

    def _callback(self, session: Session, attempt: LiveAttempt, band: TimeBand) -> None:
        exists = session.scalar(
            select(CallbackRequest.id).where(CallbackRequest.attempt_id == attempt.id)
        )
        if exists is not None:
            return
        now = self._clock.now()
        request = CallbackRequest(
            campaign_id=attempt.campaign_id,
            person_id=attempt.person_id,
            attempt_id=attempt.id,
            time_band=band.value,
            due_at=callback_due(self._window, band, now),
            source="ivr",
            created_at=now,
        )
        session.add(request)
        session.flush()
        record_callback_requested(session, request)

    def _do_not_call(self, session: Session, attempt: LiveAttempt) -> None:
        phone = session.get(Phone, attempt.phone_id) if attempt.phone_id else None
        if phone is not None:
            self.block_number(session, phone.number_digest, "ivr_request", "ivr")

    def block_number(self, session: Session, digest: str, reason: str, source: str) -> None:
        """Put a number (by digest) on the do-not-call list and stop using it everywhere."""
        known = session.scalar(select(DoNotCall.id).where(DoNotCall.number_digest == digest))
        if known is None:
            try:
                with session.begin_nested():
                    entry = DoNotCall(number_digest=digest, reason=reason, source=source)
                    session.add(entry)
                audit.record(
                    session,
                    actor=ACTOR,
                    action="do_not_call.added",
                    object_type="do_not_call",
                    object_id=entry.id,
                    detail={"source": source, "reason": reason},
                )
            except IntegrityError:  # another process added it at the same moment
                pass
        session.execute(
            update(Phone)
            .where(Phone.number_digest == digest)
            .values(status=PhoneStatus.OPTED_OUT)
            .execution_options(synchronize_session=False)
        )

    def _wrong_number(self, session: Session, attempt: LiveAttempt) -> None:
        phone = session.get(Phone, attempt.phone_id) if attempt.phone_id else None
        if phone is None or phone.status is PhoneStatus.WRONG_NUMBER:
            return
        phone.status = PhoneStatus.WRONG_NUMBER
        audit.record(
            session,
            actor=ACTOR,
            action="phone.wrong_number",
            object_type="phone",
            object_id=phone.id,
            detail={"attempt_id": attempt.id},
        )

    def _sms_follow_up(self, session: Session, attempt: LiveAttempt) -> None:
        """A new SMS attempt due now; the dispatcher sends it with the configured template."""
        key = "sms-" + hashlib.sha256(f"sms-after:{attempt.idempotency_key}".encode()).hexdigest()
        key = key[:64]
        if session.scalar(select(Attempt.id).where(Attempt.idempotency_key == key)) is not None:
            return
        last = session.scalar(
            select(func.max(Attempt.sequence_no)).where(
                Attempt.campaign_id == attempt.campaign_id, Attempt.person_id == attempt.person_id
            )
        )
        session.add(
            Attempt(
                campaign_id=attempt.campaign_id,
                person_id=attempt.person_id,
                phone_id=attempt.phone_id,
                channel=Channel.SMS,
                sequence_no=(last or 0) + 1,
                status=AttemptStatus.SCHEDULED,
                scheduled_at=self._clock.now(),
                idempotency_key=key,
            )
        )


def callback_due(window: CallingWindow, band: TimeBand, after: datetime) -> datetime:
    """The next open instant of the calling window that falls in ``band`` (Asia/Tokyo)."""
    candidate = window.next_open(after)
    for _ in range(120):
        if candidate is None:
            break
        if band is TimeBand.ANY or _band_of(candidate) is band:
            return candidate
        candidate = window.next_open(_next_band_start(candidate, band))
    return window.next_open(after) or after  # the band never opens: the earliest open time


def _band_of(instant: datetime) -> TimeBand:
    hour = instant.astimezone(TOKYO).hour
    if hour < 12:
        return TimeBand.MORNING
    return TimeBand.AFTERNOON if hour < 17 else TimeBand.EVENING


def _next_band_start(instant: datetime, band: TimeBand) -> datetime:
    local = instant.astimezone(TOKYO)
    start = local.replace(hour=_BAND_START_HOUR[band], minute=0, second=0, microsecond=0)
    return start if start > local else start + timedelta(days=1)
