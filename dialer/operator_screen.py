"""The operator's call screen: who to call, the 3-point identity check, then the arrears.

The receivables are read only after the operator recorded 本人確認 (a POST, audited); every
opening of the screen is audited as a view of the person's data (who, which target, page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.operator_work import CALLBACK_KEY_PREFIX, cipher_for, held_attempt
from kernel import audit
from kernel.errors import Conflict, NotFound
from kernel.models import (
    AttemptStatus,
    CallbackRequest,
    Campaign,
    Person,
    PhoneStatus,
    utcnow,
)
from kernel.pii import KeyRing, PiiCipher


@dataclass(frozen=True)
class PhoneLine:
    phone_id: int
    e164: str
    display: str
    kind: str
    usable: bool


@dataclass(frozen=True)
class ReceivableLine:
    kind: str
    fiscal_year: int
    period: str
    due_date: date
    unpaid_yen: int
    late_fee_yen: int


@dataclass(frozen=True)
class CallScreen:
    attempt_id: int
    person_id: int
    campaign_name: str
    name: str
    name_kana: str
    birth_date: str
    postal_code: str
    address: str
    phones: list[PhoneLine]
    identity_confirmed: bool
    finished: bool
    inbound: bool
    callback_band: str | None
    receivables: list[ReceivableLine] = field(default_factory=list)

    @property
    def total_yen(self) -> int:
        return sum(item.unpaid_yen + item.late_fee_yen for item in self.receivables)


def display_phone(e164: str) -> str:
    try:
        parsed = phonenumbers.parse(e164, "JP")
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _phone_lines(person: Person, cipher: PiiCipher) -> list[PhoneLine]:
    lines = []
    for phone in person.phones:
        number = cipher.open_text(phone.sealed_number, "phone")
        usable = phone.status is PhoneStatus.USABLE
        lines.append(PhoneLine(phone.id, number, display_phone(number), phone.kind.value, usable))
    return lines


def _receivable_lines(person: Person) -> list[ReceivableLine]:
    items = sorted(person.receivables, key=lambda r: (r.due_date, r.kind, r.period))
    return [
        ReceivableLine(r.kind, r.fiscal_year, r.period, r.due_date, r.unpaid_yen, r.late_fee_yen)
        for r in items
    ]


def open_call_screen(
    session: Session, keyring: KeyRing, attempt_id: int, user_id: int
) -> CallScreen:
    """The call screen of the target this operator holds now (not of finished calls: no
    browsing back through earlier targets); receivables only after 本人確認."""
    attempt = held_attempt(session, attempt_id, user_id)
    if attempt.status is not AttemptStatus.CLAIMED:
        raise Conflict("この通話は記録済みです。次の対象者へ進んでください")
    person = session.get(Person, attempt.person_id) if attempt.person_id else None
    campaign = session.get(Campaign, attempt.campaign_id)
    if person is None or campaign is None:
        raise NotFound("この対象者のデータはありません(消去済み)")
    cipher = cipher_for(keyring, campaign)
    record = cipher.open_record(person.sealed_pii, "pii")
    confirmed = attempt.identity_confirmed_at is not None
    band = (
        session.scalars(
            select(CallbackRequest.time_band).where(
                CallbackRequest.operator_attempt_id == attempt.id
            )
        ).first()
        if attempt.idempotency_key.startswith(CALLBACK_KEY_PREFIX)
        else None
    )
    screen = CallScreen(
        attempt_id=attempt.id,
        person_id=person.id,
        campaign_name=campaign.name,
        name=str(record.get("name") or ""),
        name_kana=str(record.get("name_kana") or ""),
        birth_date=str(record.get("birth_date") or ""),
        postal_code=str(record.get("postal_code") or ""),
        address=str(record.get("address") or ""),
        phones=_phone_lines(person, cipher),
        identity_confirmed=confirmed,
        finished=attempt.status is not AttemptStatus.CLAIMED,
        inbound=attempt.inbound,
        callback_band=band,
        receivables=_receivable_lines(person) if confirmed else [],
    )
    # last: the audit chain's lock is shared by every user, hold it only until the commit
    _audit_view(session, user_id, person.id, "call_screen", receivables=confirmed)
    return screen


def _audit_view(session: Session, user_id: int, person_id: int, page: str, **flags: bool) -> None:
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="person.viewed",
        object_type="person",
        object_id=person_id,
        detail={"page": page, **flags},
    )


def confirm_identity(session: Session, attempt_id: int, user_id: int) -> None:
    """The operator ticked 本人確認済 (3-point check: 氏名・住所・生年月日)."""
    attempt = held_attempt(session, attempt_id, user_id)
    if attempt.status is not AttemptStatus.CLAIMED:
        raise Conflict("この通話は記録済みです")
    if attempt.identity_confirmed_at is None:
        attempt.identity_confirmed_at = utcnow()
        attempt.answered_at = attempt.answered_at or attempt.identity_confirmed_at
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="identity.confirmed",
        object_type="attempt",
        object_id=attempt.id,
        detail={"person_id": attempt.person_id},
    )
