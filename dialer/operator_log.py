"""Logging an operator's call (the structured form) and finding who is calling in.

Saving the form finishes the operator's :class:`~kernel.models.Attempt` (outcome, promise,
sealed notes), counts it once in the daily aggregates and schedules what follows: a
:class:`CallbackRequest` when a callback time was given, a :class:`HandOff` to staff with the
reason, or another operator attempt after no answer / busy (up to the configured limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.operator_work import (
    HANDOFF_NOTES_FIELD,
    HANDOFF_REASONS,
    NOTES_FIELD,
    PAYMENT_METHODS,
    RESULT_CODES,
    RETRY_CODES,
    CallForm,
    cipher_for,
    held_attempt,
    new_operator_attempt,
)
from dialer.planner import time_band
from kernel import aggregates, audit
from kernel.calendar import TOKYO, CallingWindow
from kernel.errors import Conflict, InvalidInput
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    CallbackStatus,
    Campaign,
    CampaignStatus,
    Channel,
    HandOff,
    Person,
    Phone,
    PhoneStatus,
)
from kernel.pii import KeyRing, PiiCipher

RETRY_AFTER = {"busy": timedelta(minutes=15)}
DEFAULT_RETRY_AFTER = timedelta(hours=4)


@dataclass(frozen=True)
class SavedCall:
    attempt_id: int
    outcome_code: str
    callback_id: int | None
    handoff_id: int | None
    retry_attempt_id: int | None


@dataclass(frozen=True)
class FollowUpPolicy:
    window: CallingWindow
    retry_limit: int = 4


def validate_form(form: CallForm, notes_max_chars: int, now: datetime) -> None:
    """Refuse an incomplete or inconsistent form, naming the field."""
    if form.result_code not in RESULT_CODES:
        raise InvalidInput("結果コード: 一覧から選んでください")
    if form.payment_method not in PAYMENT_METHODS:
        raise InvalidInput("納付方法: 一覧から選んでください")
    if form.handoff_reason and form.handoff_reason not in HANDOFF_REASONS:
        raise InvalidInput("引継理由: 一覧から選んでください")
    if len(form.notes) > notes_max_chars:
        raise InvalidInput(f"メモ: {notes_max_chars}文字以内で入力してください")
    if form.result_code == "promise" and form.promise_date is None:
        raise InvalidInput("約束日: 納付約束には約束日が必要です")
    if form.promise_amount_yen is not None and not 0 < form.promise_amount_yen < 10**10:
        raise InvalidInput("約束金額: 1円以上の金額を入力してください")
    if form.promise_date is not None and form.promise_date < now.astimezone(TOKYO).date():
        raise InvalidInput("約束日: 過去の日付は指定できません")
    if form.callback_at is not None and form.callback_at <= now:
        raise InvalidInput("折り返し日時: 未来の日時を指定してください")
    if form.result_code == "consultation" and not form.handoff_reason:
        raise InvalidInput("引継理由: 納付相談は職員への引継理由が必要です")


def save_call(
    session: Session,
    keyring: KeyRing,
    attempt_id: int,
    user_id: int,
    form: CallForm,
    policy: FollowUpPolicy,
    notes_max_chars: int,
    now: datetime,
) -> SavedCall:
    """Finish the attempt with the form's outcome and schedule what follows."""
    validate_form(form, notes_max_chars, now)
    attempt = held_attempt(session, attempt_id, user_id)
    if attempt.status is not AttemptStatus.CLAIMED:
        raise Conflict("この通話は記録済みです")
    campaign = session.get(Campaign, attempt.campaign_id)
    assert campaign is not None
    cipher = cipher_for(keyring, campaign)
    _fill_attempt(attempt, form, cipher, now)
    _close_callback(session, attempt.id)
    if form.result_code == "wrong_number" and attempt.phone_id is not None:
        _mark_wrong_number(session, attempt.phone_id)
    callback = _schedule_callback(session, attempt, form, now)
    handoff = _hand_off(session, attempt, form, cipher, user_id, now)
    saved = SavedCall(
        attempt.id,
        form.result_code,
        callback.id if callback else None,
        handoff.id if handoff else None,
        _retry(session, attempt, form, policy, now),
    )
    # Counters and the audit chain last: their rows / lock are shared by every operator, so
    # they are held only for the end of this transaction.
    if callback is not None:
        aggregates.record_callback_requested(session, callback)
    if handoff is not None:
        aggregates.record_handoff(session, handoff)
    aggregates.record_attempt_result(session, attempt)
    _audit_saved(session, user_id, saved)
    return saved


def _fill_attempt(attempt: Attempt, form: CallForm, cipher: PiiCipher, now: datetime) -> None:
    attempt.status = AttemptStatus.COMPLETED
    attempt.follow_up_planned = True  # this form schedules the follow-up itself
    attempt.outcome_code = form.result_code
    attempt.started_at = attempt.started_at or attempt.claimed_at or now
    attempt.ended_at = now
    attempt.duration_seconds = int((now - attempt.started_at).total_seconds())
    attempt.promise_date = form.promise_date
    attempt.promise_amount_yen = form.promise_amount_yen
    attempt.payment_method = form.payment_method or None
    attempt.slip_reissue = form.slip_reissue
    attempt.transfer_recommended = form.transfer_recommended
    notes = form.notes.strip()
    attempt.sealed_notes = cipher.seal_text(notes, NOTES_FIELD) if notes else None


def _close_callback(session: Session, attempt_id: int) -> None:
    for request in session.scalars(
        select(CallbackRequest).where(CallbackRequest.operator_attempt_id == attempt_id)
    ):
        request.status = CallbackStatus.DONE


def _mark_wrong_number(session: Session, phone_id: int) -> None:
    phone = session.get(Phone, phone_id)
    if phone is not None:
        phone.status = PhoneStatus.WRONG_NUMBER


def _schedule_callback(
    session: Session, attempt: Attempt, form: CallForm, now: datetime
) -> CallbackRequest | None:
    if form.callback_at is None or attempt.person_id is None:
        return None
    request = CallbackRequest(
        campaign_id=attempt.campaign_id,
        person_id=attempt.person_id,
        attempt_id=attempt.id,
        time_band=time_band(form.callback_at).value,
        due_at=form.callback_at,
        source="operator",
        created_at=now,
    )
    session.add(request)
    session.flush()
    return request


def _hand_off(
    session: Session,
    attempt: Attempt,
    form: CallForm,
    cipher: PiiCipher,
    user_id: int,
    now: datetime,
) -> HandOff | None:
    if not form.handoff_reason:
        return None
    notes = form.notes.strip()
    handoff = HandOff(
        campaign_id=attempt.campaign_id,
        person_id=attempt.person_id,
        attempt_id=attempt.id,
        reason=form.handoff_reason,
        sealed_notes=cipher.seal_text(notes, HANDOFF_NOTES_FIELD) if notes else None,
        created_by=user_id,
        created_at=now,
    )
    session.add(handoff)
    session.flush()
    return handoff


def _retry(
    session: Session, attempt: Attempt, form: CallForm, policy: FollowUpPolicy, now: datetime
) -> int | None:
    """Another operator call later after no answer / busy, unless a callback was set."""
    if form.result_code not in RETRY_CODES or form.callback_at is not None or attempt.inbound:
        return None
    if attempt.person_id is None:
        return None
    calls = session.scalar(
        select(func.count())
        .select_from(Attempt)
        .where(Attempt.person_id == attempt.person_id, Attempt.channel == Channel.OPERATOR)
    )
    if (calls or 0) >= policy.retry_limit:
        return None
    start = policy.window.next_open(now + RETRY_AFTER.get(form.result_code, DEFAULT_RETRY_AFTER))
    if start is None:
        return None
    retry = Attempt(
        campaign_id=attempt.campaign_id,
        person_id=attempt.person_id,
        phone_id=attempt.phone_id,
        channel=Channel.OPERATOR,
        sequence_no=attempt.sequence_no + 1,
        scheduled_at=start,
        idempotency_key=f"operator-retry:{attempt.id}",
    )
    session.add(retry)
    session.flush()
    return retry.id


def _audit_saved(session: Session, user_id: int, saved: SavedCall) -> None:
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="call.logged",
        object_type="attempt",
        object_id=saved.attempt_id,
        detail={
            "outcome": saved.outcome_code,
            "callback_id": saved.callback_id,
            "handoff_id": saved.handoff_id,
            "retry_attempt_id": saved.retry_attempt_id,
        },
    )


# --- inbound calls -----------------------------------------------------------------------


@dataclass(frozen=True)
class InboundMatch:
    person_id: int
    campaign_id: int
    campaign_name: str
    name: str
    name_kana: str


def e164_of(text: str) -> str:
    """A phone number typed or shown by the phone system, as E.164 (Japan by default)."""
    try:
        parsed = phonenumbers.parse(text.strip(), "JP")
    except phonenumbers.NumberParseException as error:
        raise InvalidInput("電話番号: 番号として読めません") from error
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidInput("電話番号: 桁数が正しくありません")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def atena_digest(keyring: KeyRing, atena_no: str) -> str:
    """The keyed digest the import stores in ``Person.ref_digest`` (zero padding ignored)."""
    cleaned = atena_no.strip()
    if not cleaned.isdigit():
        raise InvalidInput("宛名番号: 数字で入力してください")
    return keyring.digest("person", cleaned.lstrip("0") or "0")


def find_callers(
    session: Session, keyring: KeyRing, user_id: int, *, phone: str = "", atena_no: str = ""
) -> list[InboundMatch]:
    """Targets of live campaigns matching the calling number or the 宛名番号 (digests only)."""
    query = select(Person).join(Campaign, Person.campaign_id == Campaign.id)
    query = query.where(Campaign.wrapped_data_key.is_not(None))
    if phone:
        digest = keyring.digest("phone", e164_of(phone))
        query = query.where(
            Person.id.in_(select(Phone.person_id).where(Phone.number_digest == digest))
        )
    elif atena_no:
        query = query.where(Person.ref_digest == atena_digest(keyring, atena_no))
    else:
        raise InvalidInput("電話番号か宛名番号を入力してください")
    matches = []
    for person in session.scalars(query.order_by(Person.id).limit(20)):
        campaign = session.get(Campaign, person.campaign_id)
        assert campaign is not None
        record = cipher_for(keyring, campaign).open_record(person.sealed_pii, "pii")
        matches.append(
            InboundMatch(
                person.id,
                campaign.id,
                campaign.name,
                str(record.get("name") or ""),
                str(record.get("name_kana") or ""),
            )
        )
    for match in matches:  # each person shown is a view of personal data
        audit.record(
            session,
            actor=f"user:{user_id}",
            action="person.viewed",
            object_type="person",
            object_id=match.person_id,
            detail={"page": "inbound_lookup"},
        )
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="inbound.lookup",
        object_type="inbound",
        object_id="lookup",
        detail={"by": "phone" if phone else "atena_no", "matches": len(matches)},
    )
    return matches


def start_inbound(session: Session, person_id: int, user_id: int, now: datetime) -> int:
    """Open an operator attempt for a resident who called in; returns its id."""
    person = session.get(Person, person_id)
    if person is None:
        raise InvalidInput("対象者が見つかりません")
    campaign = session.get(Campaign, person.campaign_id)
    if campaign is None or campaign.status in (CampaignStatus.WIPED, CampaignStatus.EXPORTED):
        raise Conflict("この催告は終了しています")
    key = f"inbound:{person_id}:{user_id}:{int(now.timestamp() * 1000)}"
    attempt = new_operator_attempt(
        session, person.campaign_id, person_id, user_id, now, key, inbound=True
    )
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="inbound.started",
        object_type="attempt",
        object_id=attempt.id,
        detail={"person_id": person_id},
    )
    return attempt.id
