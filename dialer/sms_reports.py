"""What the carriers report about SMS: delivery statuses and replies that opt out.

:class:`SmsReports` does the SMS half of the call session's sink port
(:class:`~dialer.call_session.CallSession` hands it ``on_sms_status`` and ``on_inbound_sms``):
the latest delivery status goes on the (already sent and counted) SMS attempt, each final
status is counted once, and a reply of 停止 / ていし / STOP puts the sender's number - as a
digest only - on the do-not-call list.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.call_effects import CallEffects
from dialer.ports import InboundSms, SmsStatus, SmsStatusEvent
from dialer.sms import is_opt_out
from kernel.aggregates import record_sms_status
from kernel.db import Database
from kernel.models import Attempt, Channel
from kernel.pii import KeyRing

_FINAL_SMS = frozenset({SmsStatus.DELIVERED, SmsStatus.UNDELIVERED, SmsStatus.FAILED})
_FINAL_SMS_VALUES = frozenset(status.value for status in _FINAL_SMS)


class SmsReports:
    """SMS delivery statuses and inbound replies; ``warn`` counts what cannot be used."""

    def __init__(
        self,
        database: Database,
        keyring: KeyRing,
        effects: CallEffects,
        warn: Callable[[str], None],
    ) -> None:
        self._db = database
        self._keyring = keyring
        self._effects = effects
        self._warn = warn

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        with self._db.unit_of_work() as session:
            attempt = session.scalars(
                select(Attempt)
                .where(Attempt.carrier_ref == event.carrier_ref, Attempt.channel == Channel.SMS)
                .with_for_update()
            ).first()
            if attempt is None:
                self._warn("unknown_sms")
                return
            self._record_sms_status(session, attempt, event)

    def _record_sms_status(self, session: Session, attempt: Attempt, event: SmsStatusEvent) -> None:
        """The latest delivery status on the (already sent and counted) SMS attempt; each
        final delivery status is counted once. A late ``sent`` never overwrites it."""
        previous = attempt.carrier_result
        if previous in _FINAL_SMS_VALUES or previous == event.status.value:
            return
        attempt.carrier_result = event.status.value
        if event.status in _FINAL_SMS:
            record_sms_status(
                session,
                campaign_id=attempt.campaign_id,
                person_id=attempt.person_id,
                status=event.status.value,
                at=event.occurred_at,
            )

    def on_inbound_sms(self, message: InboundSms) -> None:
        """停止 / STOP puts the sender's number (as a digest only) on the do-not-call list."""
        if not is_opt_out(message.body):
            self._warn("inbound_sms_not_opt_out")
            return
        digest = self._keyring.digest("phone", message.from_e164.strip())
        with self._db.unit_of_work() as session:
            self._effects.block_number(session, digest, "opt_out", "sms")
