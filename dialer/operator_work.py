"""What the operator console does with targets: claim, open, confirm identity, log the call.

Each function runs inside the caller's unit of work and commits nothing itself. Claims are
exclusive: the candidate row is picked with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL)
and then taken with a conditional ``UPDATE ... WHERE status = <free>``, whose row count says
whether this operator won; SQLite serializes writers, so the conditional update alone suffices.
Callbacks residents asked for in the IVR come first once their time band has begun.
Every view of a person's data is audited (who, which target, which page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from kernel import audit
from kernel.calendar import CallingWindow
from kernel.errors import Conflict, Forbidden, NotFound
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    CallbackStatus,
    Campaign,
    CampaignStatus,
    Channel,
    ExclusionEntry,
    ExclusionList,
    Person,
    Phone,
    TargetStatus,
)
from kernel.pii import KeyRing, PiiCipher

NOTES_FIELD = "notes"  # the cipher field of Attempt.sealed_notes (as sync.results reads it)
HANDOFF_NOTES_FIELD = "handoff_notes"
CLAIM_TRIES = 5
CALLBACK_KEY_PREFIX = "callback:"  # idempotency key of the operator attempt for a callback

#: The operator's result codes (fixed list; Japanese first).
RESULT_CODES: dict[str, tuple[str, str]] = {
    "promise": ("納付約束", "Promise to pay"),
    "paid_claimed": ("納付済みの申出", "Says already paid"),
    "consultation": ("納付相談(職員へ引継)", "Consultation (to staff)"),
    "callback": ("折り返し・再架電", "Call back later"),
    "rpc_other": ("本人接触(その他)", "Reached, other"),
    "wrong_party": ("本人以外が応答", "Someone else answered"),
    "no_answer": ("応答なし", "No answer"),
    "busy": ("話し中", "Busy"),
    "voicemail": ("留守番電話", "Voicemail"),
    "wrong_number": ("番号違い", "Wrong number"),
    "refused": ("拒否", "Refused"),
}
RETRY_CODES = frozenset({"no_answer", "busy", "voicemail", "wrong_party"})
PAYMENT_METHODS: dict[str, tuple[str, str]] = {
    "": ("(説明なし)", "(none)"),
    "slip": ("納付書(金融機関・コンビニ)", "Payment slip (bank, convenience store)"),
    "el_qr": ("地方税統一QRコード(eL-QR)", "eL-QR code"),
    "app": ("スマートフォン決済アプリ", "Smartphone payment app"),
    "transfer": ("口座振替", "Account transfer"),
    "counter": ("窓口納付", "At the counter"),
}
HANDOFF_REASONS: dict[str, tuple[str, str]] = {
    "installment": ("分納の相談", "Installment request"),
    "hardship": ("生活困窮・猶予の相談", "Hardship / deferral"),
    "dispute": ("課税内容への疑義", "Dispute"),
    "refusal": ("納付拒否", "Refusal"),
    "other": ("その他", "Other"),
}


@dataclass(frozen=True)
class Claim:
    attempt_id: int
    callback_id: int | None


@dataclass(frozen=True)
class CallForm:
    result_code: str
    promise_date: date | None = None
    promise_amount_yen: int | None = None
    payment_method: str = ""
    slip_reissue: bool = False
    transfer_recommended: bool = False
    callback_at: datetime | None = None
    handoff_reason: str = ""
    notes: str = ""


def cipher_for(keyring: KeyRing, campaign: Campaign) -> PiiCipher:
    if campaign.wrapped_data_key is None:
        raise Conflict(f"campaign {campaign.id} has no data key (wiped?)")
    return keyring.cipher(campaign.wrapped_data_key, campaign.id)


def _excluded(person_ref: Any) -> Any:
    return exists(
        select(ExclusionEntry.id)
        .join(ExclusionList, ExclusionEntry.list_id == ExclusionList.id)
        .where(ExclusionList.active.is_(True), ExclusionEntry.ref_digest == person_ref)
    )


def _workable() -> list[Any]:
    """Targets an operator may call now: running campaign, active target, not excluded (R-6)."""
    return [
        Campaign.status == CampaignStatus.RUNNING,
        Person.status == TargetStatus.ACTIVE,
        ~_excluded(Person.ref_digest),
    ]


def current_claim(session: Session, user_id: int) -> Claim | None:
    """The attempt this operator holds but has not finished (one at a time)."""
    attempt_id = session.scalars(
        select(Attempt.id)
        .where(
            Attempt.operator_id == user_id,
            Attempt.channel == Channel.OPERATOR,
            Attempt.status == AttemptStatus.CLAIMED,
        )
        .order_by(Attempt.id)
        .limit(1)
    ).first()
    return None if attempt_id is None else Claim(attempt_id, None)


@dataclass(frozen=True)
class ClaimGate:
    """What must hold before an operator may call out: the calling window (R-1, R-2) and a
    fresh exclusion list (R-6), as for every automated contact."""

    window: CallingWindow
    exclusion_max_age: timedelta


class ClaimRefused(Conflict):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_gate(session: Session, gate: ClaimGate, now: datetime) -> None:
    if not gate.window.is_open(now):
        raise ClaimRefused("outside_window", "架電できる時間帯ではありません (R-1/R-2)")
    as_of = session.scalar(
        select(func.max(ExclusionList.as_of)).where(ExclusionList.active.is_(True))
    )
    if as_of is None:
        raise ClaimRefused("exclusion_list_missing", "除外者リストが取り込まれていません (R-6)")
    if now - as_of > gate.exclusion_max_age:
        raise ClaimRefused("exclusion_list_stale", "除外者リストが古いため架電できません (R-6)")


def claim_next(session: Session, user_id: int, gate: ClaimGate, now: datetime) -> Claim | None:
    """Take the next target for this operator: a due callback first, then the queue.

    An operator holds one target at a time: while one is unfinished, that one is returned.
    """
    moment = now
    held = current_claim(session, user_id)
    if held is not None:
        return held
    check_gate(session, gate, moment)
    claim = _claim_callback(session, user_id, moment) or _claim_attempt(session, user_id, moment)
    if claim is not None:
        audit.record(
            session,
            actor=f"user:{user_id}",
            action="target.claimed",
            object_type="attempt",
            object_id=claim.attempt_id,
            detail={"callback": claim.callback_id is not None},
        )
    return claim


def _claim_attempt(session: Session, user_id: int, moment: datetime) -> Claim | None:
    for _ in range(CLAIM_TRIES):
        candidate = session.scalars(
            select(Attempt.id)
            .join(Person, Attempt.person_id == Person.id)
            .join(Campaign, Attempt.campaign_id == Campaign.id)
            .where(
                Attempt.channel == Channel.OPERATOR,
                Attempt.status == AttemptStatus.SCHEDULED,
                Attempt.scheduled_at <= moment,
                *_workable(),
            )
            .order_by(Attempt.scheduled_at, Attempt.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=Attempt)
        ).first()
        if candidate is None:
            return None
        taken = session.execute(
            update(Attempt)
            .where(Attempt.id == candidate, Attempt.status == AttemptStatus.SCHEDULED)
            .values(
                status=AttemptStatus.CLAIMED,
                claimed_by=f"user:{user_id}",
                claimed_at=moment,
                operator_id=user_id,
            )
            .execution_options(synchronize_session="evaluate")
        )
        if getattr(taken, "rowcount", 0) == 1:
            return Claim(candidate, None)
    return None


def _claim_callback(session: Session, user_id: int, moment: datetime) -> Claim | None:
    for _ in range(CLAIM_TRIES):
        row = session.execute(
            select(CallbackRequest.id, CallbackRequest.campaign_id, CallbackRequest.person_id)
            .join(Person, CallbackRequest.person_id == Person.id)
            .join(Campaign, CallbackRequest.campaign_id == Campaign.id)
            .where(
                CallbackRequest.status == CallbackStatus.PENDING,
                CallbackRequest.due_at <= moment,
                *_workable(),
            )
            .order_by(CallbackRequest.due_at, CallbackRequest.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=CallbackRequest)
        ).first()
        if row is None:
            return None
        taken = session.execute(
            update(CallbackRequest)
            .where(CallbackRequest.id == row.id, CallbackRequest.status == CallbackStatus.PENDING)
            .values(status=CallbackStatus.CLAIMED, claimed_by=user_id)
            .execution_options(synchronize_session="evaluate")
        )
        if getattr(taken, "rowcount", 0) == 1:
            attempt = new_operator_attempt(
                session,
                row.campaign_id,
                row.person_id,
                user_id,
                moment,
                f"{CALLBACK_KEY_PREFIX}{row.id}",
            )
            session.execute(
                update(CallbackRequest)
                .where(CallbackRequest.id == row.id)
                .values(operator_attempt_id=attempt.id)
                .execution_options(synchronize_session="evaluate")
            )
            return Claim(attempt.id, row.id)
    return None


def _next_sequence(session: Session, person_id: int) -> int:
    latest = session.scalar(
        select(func.max(Attempt.sequence_no)).where(Attempt.person_id == person_id)
    )
    return (latest or 0) + 1


def new_operator_attempt(
    session: Session,
    campaign_id: int,
    person_id: int,
    user_id: int,
    moment: datetime,
    key: str,
    *,
    inbound: bool = False,
) -> Attempt:
    phone_id = session.scalars(
        select(Phone.id).where(Phone.person_id == person_id).order_by(Phone.position).limit(1)
    ).first()
    attempt = Attempt(
        campaign_id=campaign_id,
        person_id=person_id,
        phone_id=phone_id,
        channel=Channel.OPERATOR,
        sequence_no=_next_sequence(session, person_id),
        status=AttemptStatus.CLAIMED,
        scheduled_at=moment,
        idempotency_key=key[:64],
        claimed_by=f"user:{user_id}",
        claimed_at=moment,
        operator_id=user_id,
        started_at=moment,
        inbound=inbound,
    )
    session.add(attempt)
    session.flush()
    return attempt


def release(session: Session, attempt_id: int, user_id: int) -> None:
    """Give a claimed, untouched target back to the queue (e.g. the operator must leave)."""
    attempt = held_attempt(session, attempt_id, user_id)
    if attempt.status is not AttemptStatus.CLAIMED:
        raise Conflict("この通話は記録済みです")
    if attempt.inbound or attempt.idempotency_key.startswith(CALLBACK_KEY_PREFIX):
        attempt.status = AttemptStatus.CANCELLED
        _reopen_callback(session, attempt.id)
    else:
        attempt.status = AttemptStatus.SCHEDULED
        attempt.claimed_by = attempt.claimed_at = attempt.operator_id = None
        # the next operator checks identity again before anything is disclosed
        attempt.identity_confirmed_at = attempt.answered_at = attempt.started_at = None
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="target.released",
        object_type="attempt",
        object_id=attempt.id,
    )


def _reopen_callback(session: Session, attempt_id: int) -> None:
    session.execute(
        update(CallbackRequest)
        .where(CallbackRequest.operator_attempt_id == attempt_id)
        .values(status=CallbackStatus.PENDING, claimed_by=None, operator_attempt_id=None)
        .execution_options(synchronize_session="evaluate")
    )


def held_attempt(session: Session, attempt_id: int, user_id: int) -> Attempt:
    attempt = session.get(Attempt, attempt_id)
    if attempt is None or attempt.channel is not Channel.OPERATOR:
        raise NotFound(f"attempt {attempt_id} does not exist")
    if attempt.operator_id != user_id:
        raise Forbidden("この対象者は他のオペレータが担当しています")
    return attempt
