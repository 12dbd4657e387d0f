"""The dialer's call-session service: carrier reports in, IVR actions out, outcomes saved.

:class:`CallSession` is the :class:`~dialer.ports.CallEventSink` every carrier (Twilio, Asterisk,
the simulator) reports to. For each :class:`~dialer.ports.CallEvent` it finds the attempt (by
``attempt_key`` = ``Attempt.idempotency_key``, else by ``carrier_ref``), maps the event with the
shared :mod:`dialer.call_events` rules, steps the campaign's IVR flow and applies the actions'
side effects together with the attempt in one unit of work.

Coordination keys (all PII-free):

* ``ivr:{campaign_id}:{attempt_id}`` - the call's :class:`SessionRecord` (JSON: call phase,
  engine state, digests of retry tokens seen) with a TTL of ``ivr.session_ttl_seconds``, so any
  process can take the next webhook. The campaign wipe deletes the ``ivr:{campaign_id}:``
  prefix.
* ``operators:free`` - how many operators can take a transferred call now, as a decimal string.
  The console sets it with :func:`set_free_operators` whenever an operator becomes free or busy
  and at least once a minute (it expires after :data:`OPERATORS_FREE_TTL_SECONDS`); a missing
  key means nobody is free. A ``Transfer`` action
  takes one operator (decrement under the ``operators:free`` lock).

Repeats are harmless: status repeats and events after the end map to nothing, the attempt is
finished (and counted in the daily aggregates) once, and a carrier that can tell retries apart
puts a stable token in ``event.raw["idempotency_token"]`` (Twilio: the
``I-Twilio-Idempotency-Token`` header), whose second delivery gets ``[]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import ivr_scripts.actions as act
from dialer.call_events import CallPhase, carrier_result, next_phase, to_ivr_event
from dialer.clock import Clock, SystemClock
from dialer.ports import CallEvent, InboundSms, SmsStatus, SmsStatusEvent
from dialer.sms import is_opt_out
from ivr_scripts import CallContext, Flow, State, load_builtin_flow, step
from ivr_scripts.events import CallAnswered, Event
from ivr_scripts.model import OutcomeCode, ReceivableItem, SecondFactor, TimeBand
from kernel import audit
from kernel.aggregates import (
    record_attempt_result,
    record_callback_requested,
    record_sms_status,
)
from kernel.calendar import TOKYO, CallingWindow
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.errors import DunningError
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Campaign,
    Channel,
    DisclosureLevel,
    DoNotCall,
    Person,
    Phone,
    PhoneKind,
    PhoneStatus,
)
from kernel.pii import KeyRing
from kernel.settings import Settings

log = logging.getLogger(__name__)

OPERATORS_FREE_KEY = "operators:free"
OPERATORS_FREE_TTL_SECONDS = 120.0
CALL_LOCK_SECONDS = 30.0
LOCK_WAIT_SECONDS = 10.0
SEEN_TOKENS_KEPT = 64
ACTOR = "ivr"
_DONE = frozenset({AttemptStatus.COMPLETED, AttemptStatus.REFUSED, AttemptStatus.CANCELLED})
_FINAL_SMS = frozenset({SmsStatus.DELIVERED, SmsStatus.UNDELIVERED, SmsStatus.FAILED})
_FINAL_SMS_VALUES = frozenset(status.value for status in _FINAL_SMS)
_BAND_START_HOUR = {TimeBand.MORNING: 0, TimeBand.AFTERNOON: 12, TimeBand.EVENING: 17}
FlowLoader = Callable[[str], Flow]


class CallSessionBusy(DunningError):
    """Another process holds this call for longer than expected; the carrier should retry."""

    http_status = 503


def session_key(campaign_id: int, attempt_id: int) -> str:
    return f"ivr:{campaign_id}:{attempt_id}"


def set_free_operators(coordination: Coordination, count: int) -> None:
    """What the console calls when operators become free or busy (and at least every minute)."""
    coordination.put_state(OPERATORS_FREE_KEY, str(max(0, count)), OPERATORS_FREE_TTL_SECONDS)


# ------------------------------------------------------------------ the PII-free session record


@dataclass(frozen=True)
class SessionRecord:
    """What lives in coordination between two reports of one call (no personal values)."""

    phase: CallPhase = CallPhase.DIALING
    engine: State = State()
    seen: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {"phase": self.phase.value, "engine": asdict(self.engine), "seen": list(self.seen)}
        )

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        data = json.loads(text)
        engine: dict[str, Any] = dict(data["engine"])
        engine["second_factor"] = SecondFactor(engine["second_factor"])
        for name, kind in (
            ("disclosure_reached", DisclosureLevel),
            ("callback_band", TimeBand),
            ("outcome", OutcomeCode),
        ):
            engine[name] = None if engine[name] is None else kind(engine[name])
        return cls(CallPhase(data["phase"]), State(**engine), tuple(data["seen"]))


def retry_token(event: CallEvent) -> str | None:
    """A digest of the carrier's retry token, when the carrier supplied one."""
    token = event.raw.get("idempotency_token") or event.raw.get("I-Twilio-Idempotency-Token")
    return hashlib.sha256(token.encode()).hexdigest()[:24] if token else None


# ------------------------------------------------------------------ callbacks in a time band


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


# ------------------------------------------------------------------ the service


@dataclass
class _Handled:
    actions: list[act.Action]
    key: str
    record: SessionRecord | None  # None: nothing to store (a repeat)


class CallSession:
    """Carrier reports -> IVR actions, with the attempt and its side effects saved together."""

    def __init__(
        self,
        database: Database,
        coordination: Coordination,
        keyring: KeyRing,
        settings: Settings,
        *,
        flows: FlowLoader | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._db = database
        self._coordination = coordination
        self._keyring = keyring
        self._settings = settings
        self._flows = flows or lru_cache(maxsize=16)(load_builtin_flow)
        self._clock = clock or SystemClock()
        self._window = CallingWindow(settings.calling_window.policy())
        self._owner = f"call-session-{uuid.uuid4().hex[:12]}"
        self.warnings: Counter[str] = Counter()

    # ---------------------------------------------------------------- calls

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        found = self._find_call(event)
        if found is None:
            self._warn("unknown_call")
            return []
        attempt_id, campaign_id = found
        with self._locked(f"ivr-call:{attempt_id}"):
            with self._db.unit_of_work() as session:
                handled = self._handle(
                    session, attempt_id, session_key(campaign_id, attempt_id), event
                )
            self._store(handled)
        if any(isinstance(action, act.Transfer) for action in handled.actions):
            self._take_operator()
        return handled.actions

    def _find_call(self, event: CallEvent) -> tuple[int, int] | None:
        columns = select(Attempt.id, Attempt.campaign_id)
        with self._db.read_only() as session:
            row = None
            if event.attempt_key:
                row = session.execute(
                    columns.where(Attempt.idempotency_key == event.attempt_key)
                ).first()
            if row is None and event.carrier_ref:
                row = session.execute(
                    columns.where(Attempt.carrier_ref == event.carrier_ref).order_by(
                        Attempt.id.desc()
                    )
                ).first()
        return None if row is None else (int(row[0]), int(row[1]))

    def _handle(self, session: Session, attempt_id: int, key: str, event: CallEvent) -> _Handled:
        attempt = session.get(Attempt, attempt_id, with_for_update=True)
        assert attempt is not None, "the attempt was found a moment ago"
        record = self._load(key, attempt)
        token = retry_token(event)
        if token is not None and token in record.seen:
            self._warn("repeated_event")
            return _Handled([], key, None)
        self._bind(attempt, event)
        ivr_event = to_ivr_event(event, record.phase)
        phase = next_phase(event, record.phase)
        actions: list[act.Action] = []
        engine = record.engine
        if ivr_event is not None:
            if isinstance(ivr_event, CallAnswered) and attempt.answered_at is None:
                attempt.answered_at = event.occurred_at
            actions, engine = self._step(session, attempt, engine, ivr_event)
            if engine.identity_confirmed and attempt.identity_confirmed_at is None:
                attempt.identity_confirmed_at = event.occurred_at
            self._apply(session, attempt, actions)
        if phase is CallPhase.ENDED and record.phase is not CallPhase.ENDED:
            self._finish(session, attempt, event)
        seen = (*record.seen, token)[-SEEN_TOKENS_KEPT:] if token else record.seen
        return _Handled(actions, key, SessionRecord(phase, engine, seen))

    def _load(self, key: str, attempt: Attempt) -> SessionRecord:
        stored = self._coordination.get_state(key)
        if stored is not None:
            return SessionRecord.from_json(stored)
        if attempt.status in _DONE:  # state gone after the end: the call stays ended
            return SessionRecord(phase=CallPhase.ENDED, engine=State(ended=True))
        return SessionRecord()

    def _store(self, handled: _Handled) -> None:
        if handled.record is None:
            return
        if handled.record.phase is CallPhase.ENDED:  # the attempt row now says it all
            self._coordination.delete_state(handled.key)
            return
        ttl = float(self._settings.ivr.session_ttl_seconds)
        self._coordination.put_state(handled.key, handled.record.to_json(), ttl)

    @staticmethod
    def _bind(attempt: Attempt, event: CallEvent) -> None:
        if attempt.carrier_ref is None and event.carrier_ref:
            attempt.carrier_ref = event.carrier_ref
        if attempt.started_at is None:
            attempt.started_at = event.occurred_at
        if attempt.status in (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED):
            attempt.status = AttemptStatus.IN_PROGRESS

    def _step(
        self, session: Session, attempt: Attempt, engine: State, ivr_event: Event
    ) -> tuple[list[act.Action], State]:
        campaign = session.get(Campaign, attempt.campaign_id)
        context = self._context(session, attempt, campaign) if campaign else None
        if campaign is None or context is None:
            self._warn("context_unavailable")
            return [act.Hangup()], replace(engine, ended=True)
        return step(self._flows(campaign.script_name), context, engine, ivr_event)

    def _context(
        self, session: Session, attempt: Attempt, campaign: Campaign
    ) -> CallContext | None:
        """The engine's view of the call, opened from the sealed record (None: cannot call)."""
        person = session.get(Person, attempt.person_id) if attempt.person_id else None
        if person is None or campaign.wrapped_data_key is None:
            return None
        cipher = self._keyring.cipher(campaign.wrapped_data_key, campaign.id)
        record = cipher.open_record(person.sealed_pii, "pii")
        kana = str(record.get("name_kana") or "").strip()
        if not kana:
            return None
        phone = session.get(Phone, attempt.phone_id) if attempt.phone_id else None
        detail = campaign.disclosure_level is DisclosureLevel.DETAIL
        town, ivr = self._settings.municipality, self._settings.ivr
        return CallContext(
            municipality=town.name,
            municipality_kana=town.name_kana,
            section=town.section,
            callback_number=town.callback_number_display,
            name_kana=kana,
            disclosure=campaign.disclosure_level,
            items=_items(person),
            birth_mmdd=_birth_mmdd(record.get("birth_date")) if detail else None,
            mobile=phone is not None and phone.kind is PhoneKind.MOBILE,
            operator_available=self._operator_free() > 0,
            payment_methods=tuple(ivr.payment_methods),
            machine_policy=ivr.machine_policy,
            language="en" if person.language == "en" else "ja",
        )

    # ---------------------------------------------------------------- side effects

    def _apply(self, session: Session, attempt: Attempt, actions: list[act.Action]) -> None:
        for action in actions:
            if isinstance(action, act.RecordOutcome) and attempt.outcome_code is None:
                attempt.outcome_code = action.code.value
            elif isinstance(action, act.RequestCallback):
                self._callback(session, attempt, action.time_band)
            elif isinstance(action, act.AddDoNotCall):
                self._do_not_call(session, attempt)
            elif isinstance(action, act.MarkWrongNumber):
                self._wrong_number(session, attempt)
            elif isinstance(action, act.RequestSms):
                self._sms_follow_up(session, attempt)

    def _callback(self, session: Session, attempt: Attempt, band: TimeBand) -> None:
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

    def _do_not_call(self, session: Session, attempt: Attempt) -> None:
        phone = session.get(Phone, attempt.phone_id) if attempt.phone_id else None
        if phone is not None:
            self._block_number(session, phone.number_digest, "ivr_request", "ivr")

    def _block_number(self, session: Session, digest: str, reason: str, source: str) -> None:
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

    def _wrong_number(self, session: Session, attempt: Attempt) -> None:
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

    def _sms_follow_up(self, session: Session, attempt: Attempt) -> None:
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

    def _finish(self, session: Session, attempt: Attempt, event: CallEvent) -> None:
        """The final carrier status: the attempt is completed and counted, exactly once."""
        if attempt.status in _DONE:
            return
        attempt.status = AttemptStatus.COMPLETED
        attempt.carrier_result = carrier_result(event)
        attempt.ended_at = event.occurred_at
        if event.duration_seconds is not None:
            attempt.duration_seconds = event.duration_seconds
        elif attempt.answered_at is not None:
            seconds = (event.occurred_at - attempt.answered_at).total_seconds()
            attempt.duration_seconds = max(0, int(seconds))
        else:
            attempt.duration_seconds = 0
        session.flush()
        record_attempt_result(session, attempt)

    # ---------------------------------------------------------------- operators

    def _operator_free(self) -> int:
        stored = self._coordination.get_state(OPERATORS_FREE_KEY)
        try:
            return max(0, int(stored)) if stored is not None else 0
        except ValueError:
            self._warn("operators_free_unreadable")
            return 0

    def _take_operator(self) -> None:
        with self._locked(OPERATORS_FREE_KEY):
            free = self._operator_free()
            if free > 0:
                self._coordination.put_state(
                    OPERATORS_FREE_KEY, str(free - 1), OPERATORS_FREE_TTL_SECONDS
                )

    # ---------------------------------------------------------------- SMS reports

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
            self._block_number(session, digest, "opt_out", "sms")

    # ---------------------------------------------------------------- helpers

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        owner = f"{self._owner}:{uuid.uuid4().hex[:8]}"  # one owner per holder, even in-process
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not self._coordination.acquire_lock(key, owner, CALL_LOCK_SECONDS):
            if time.monotonic() > deadline:
                raise CallSessionBusy(f"{key} is held by another process")
            time.sleep(0.005)
        try:
            yield
        finally:
            self._coordination.release_lock(key, owner)

    def _warn(self, reason: str) -> None:
        self.warnings[reason] += 1
        log.warning("call session: %s (seen %d times)", reason, self.warnings[reason])


def _items(person: Person) -> tuple[ReceivableItem, ...]:
    ordered = sorted(person.receivables, key=lambda r: (r.fiscal_year, r.due_date, r.kind))
    return tuple(ReceivableItem(r.fiscal_year, r.kind, r.unpaid_yen, r.due_date) for r in ordered)


def _birth_mmdd(value: object) -> str | None:
    """``"1980-04-15"`` (how the loader seals a birth date) -> ``"0415"``."""
    text = str(value or "")
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        mmdd = text[5:7] + text[8:10]
        return mmdd if mmdd.isdigit() else None
    return None
