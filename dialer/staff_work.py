"""The staff side: the hand-off queue (take, note, close) and a target's full timeline (R-8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.operator_work import HANDOFF_NOTES_FIELD, NOTES_FIELD, cipher_for
from kernel import audit
from kernel.calendar import TOKYO
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.models import (
    Attempt,
    CallbackRequest,
    Campaign,
    HandOff,
    HandOffStatus,
    Person,
    User,
    utcnow,
)
from kernel.pii import KeyRing

STAFF_NOTES_FIELD = "handoff_staff_notes"
STAFF_NOTE_MAX = 2000
HandOffAction = Callable[[Session, int, int], None]


@dataclass(frozen=True)
class HandOffRow:
    id: int
    campaign_id: int
    person_id: int | None
    reason: str
    status: HandOffStatus
    created_at: datetime
    created_by: str
    assigned_to: str


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    channel: str
    status: str
    outcome: str
    who: str
    notes: str
    promise: str


@dataclass(frozen=True)
class HandOffDetail:
    row: HandOffRow
    person_name: str
    person_kana: str
    operator_notes: str
    staff_notes: str
    timeline: list[TimelineEntry]


def _usernames(session: Session) -> dict[int, str]:
    return dict(session.execute(select(User.id, User.display_name)).tuples().all())


def list_handoffs(session: Session, statuses: tuple[HandOffStatus, ...]) -> list[HandOffRow]:
    """The queue without personal values (reason, dates, who): safe to list."""
    names = _usernames(session)
    rows = session.scalars(
        select(HandOff).where(HandOff.status.in_(statuses)).order_by(HandOff.created_at, HandOff.id)
    ).all()
    return [_row(handoff, names) for handoff in rows]


def _row(handoff: HandOff, names: dict[int, str]) -> HandOffRow:
    return HandOffRow(
        id=handoff.id,
        campaign_id=handoff.campaign_id,
        person_id=handoff.person_id,
        reason=handoff.reason,
        status=handoff.status,
        created_at=handoff.created_at,
        created_by=names.get(handoff.created_by or 0, "IVR"),
        assigned_to=names.get(handoff.assigned_to or 0, ""),
    )


def _get(session: Session, handoff_id: int) -> HandOff:
    handoff = session.get(HandOff, handoff_id)
    if handoff is None:
        raise NotFound(f"hand-off {handoff_id} does not exist")
    return handoff


def _audit(session: Session, user_id: int, action: str, handoff: HandOff) -> None:
    audit.record(
        session,
        actor=f"user:{user_id}",
        action=action,
        object_type="handoff",
        object_id=handoff.id,
        detail={"person_id": handoff.person_id},
    )


def take(session: Session, handoff_id: int, user_id: int) -> None:
    handoff = _get(session, handoff_id)
    if handoff.status is not HandOffStatus.OPEN:
        raise Conflict("この引継は既に担当者がいます")
    handoff.status, handoff.assigned_to, handoff.taken_at = HandOffStatus.TAKEN, user_id, utcnow()
    _audit(session, user_id, "handoff.taken", handoff)


def add_note(session: Session, keyring: KeyRing, handoff_id: int, user_id: int, text: str) -> None:
    """Append a dated staff note (sealed with the campaign key)."""
    cleaned = text.strip()
    if not cleaned or len(cleaned) > STAFF_NOTE_MAX:
        raise InvalidInput(f"メモ: 1〜{STAFF_NOTE_MAX}文字で入力してください")
    handoff = _get(session, handoff_id)
    if handoff.status is HandOffStatus.CLOSED:
        raise Conflict("完了した引継にはメモを追加できません")
    campaign = session.get(Campaign, handoff.campaign_id)
    assert campaign is not None
    cipher = cipher_for(keyring, campaign)
    previous = (
        cipher.open_text(handoff.sealed_staff_notes, STAFF_NOTES_FIELD)
        if handoff.sealed_staff_notes
        else ""
    )
    stamp = utcnow().astimezone(TOKYO).strftime("%Y-%m-%d %H:%M")
    combined = f"{previous}\n[{stamp}] {cleaned}".strip()
    handoff.sealed_staff_notes = cipher.seal_text(combined, STAFF_NOTES_FIELD)
    _audit(session, user_id, "handoff.noted", handoff)


def close(session: Session, handoff_id: int, user_id: int) -> None:
    handoff = _get(session, handoff_id)
    if handoff.status is HandOffStatus.CLOSED:
        raise Conflict("この引継は完了しています")
    handoff.status, handoff.closed_at = HandOffStatus.CLOSED, utcnow()
    handoff.assigned_to = handoff.assigned_to or user_id
    _audit(session, user_id, "handoff.closed", handoff)


def handoff_detail(
    session: Session, keyring: KeyRing, handoff_id: int, user_id: int
) -> HandOffDetail:
    """One hand-off with the person, the operator's notes and the timeline (audited view)."""
    handoff = _get(session, handoff_id)
    campaign = session.get(Campaign, handoff.campaign_id)
    assert campaign is not None
    cipher = cipher_for(keyring, campaign)
    person = session.get(Person, handoff.person_id) if handoff.person_id else None
    record = cipher.open_record(person.sealed_pii, "pii") if person else {}
    detail = HandOffDetail(
        row=_row(handoff, _usernames(session)),
        person_name=str(record.get("name") or ""),
        person_kana=str(record.get("name_kana") or ""),
        operator_notes=cipher.open_text(handoff.sealed_notes, HANDOFF_NOTES_FIELD)
        if handoff.sealed_notes
        else "",
        staff_notes=cipher.open_text(handoff.sealed_staff_notes, STAFF_NOTES_FIELD)
        if handoff.sealed_staff_notes
        else "",
        timeline=_timeline(session, keyring, person) if person else [],
    )
    if person is not None:
        _audit_view(session, user_id, person.id, "handoff")
    return detail


def _audit_view(session: Session, user_id: int, person_id: int, page: str) -> None:
    audit.record(
        session,
        actor=f"user:{user_id}",
        action="person.viewed",
        object_type="person",
        object_id=person_id,
        detail={"page": page},
    )


def timeline(
    session: Session, keyring: KeyRing, person_id: int, user_id: int
) -> list[TimelineEntry]:
    """Everything that happened to one target, oldest first (audited view)."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"target {person_id} does not exist")
    entries = _timeline(session, keyring, person)
    _audit_view(session, user_id, person.id, "timeline")  # last: the chain lock is shared
    return entries


def _timeline(session: Session, keyring: KeyRing, person: Person) -> list[TimelineEntry]:
    campaign = session.get(Campaign, person.campaign_id)
    assert campaign is not None
    cipher = cipher_for(keyring, campaign)
    names = _usernames(session)
    entries: list[TimelineEntry] = []
    for attempt in session.scalars(select(Attempt).where(Attempt.person_id == person.id)):
        notes = cipher.open_text(attempt.sealed_notes, NOTES_FIELD) if attempt.sealed_notes else ""
        promise = ""
        if attempt.promise_date:
            amount = f" ¥{attempt.promise_amount_yen:,}" if attempt.promise_amount_yen else ""
            promise = f"{attempt.promise_date.isoformat()}{amount}"
        entries.append(
            TimelineEntry(
                at=attempt.ended_at or attempt.started_at or attempt.scheduled_at,
                kind="inbound" if attempt.inbound else "attempt",
                channel=attempt.channel.value,
                status=attempt.status.value,
                outcome=attempt.outcome_code or attempt.carrier_result or "",
                who=names.get(attempt.operator_id or 0, ""),
                notes=notes,
                promise=promise,
            )
        )
    entries.extend(_callback_entries(session, person.id))
    entries.extend(_handoff_entries(session, person.id, names))
    return sorted(entries, key=lambda entry: entry.at)


def _callback_entries(session: Session, person_id: int) -> list[TimelineEntry]:
    requests = session.scalars(
        select(CallbackRequest).where(CallbackRequest.person_id == person_id)
    )
    return [
        TimelineEntry(r.created_at, "callback", r.source, r.status.value, r.time_band, "", "", "")
        for r in requests
    ]


def _handoff_entries(
    session: Session, person_id: int, names: dict[int, str]
) -> list[TimelineEntry]:
    handoffs = session.scalars(select(HandOff).where(HandOff.person_id == person_id))
    return [
        TimelineEntry(
            h.created_at,
            "handoff",
            "",
            h.status.value,
            h.reason,
            names.get(h.created_by or 0, ""),
            "",
            "",
        )
        for h in handoffs
    ]
