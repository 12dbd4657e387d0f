"""What the dispatcher reads before each contact, in the transaction that decides it.

:func:`gather` collects a :class:`~dialer.interlocks.ContactFacts` snapshot for one claimed
attempt (campaign and target status, the phone, the active exclusion list and whether the
target is on it, the do-not-call list, contacts already made to that number today and in the
last 7 days). Only after every interlock passed does :func:`dial_order` open the sealed
number, in memory, for the carrier request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.interlocks import ContactFacts
from kernel.calendar import TOKYO, CallingWindow
from kernel.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    Channel,
    DoNotCall,
    ExclusionEntry,
    ExclusionList,
    Person,
    Phone,
)
from kernel.pii import PiiCipher

CipherFor = Callable[[Campaign], PiiCipher]
T = TypeVar("T", Campaign, Person, Phone)
#: Contacts made (a claim not yet dialed is not one; a lost call counts from its claim).
CONTACT_STATUSES = (AttemptStatus.COMPLETED, AttemptStatus.IN_PROGRESS)


@dataclass(frozen=True)
class DialOrder:
    """One contact to make now. ``to_e164`` is personal data: memory only, never logged."""

    attempt_id: int
    key: str
    channel: Channel
    to_e164: str
    number_digest: str
    campaign_id: int

    def __repr__(self) -> str:  # keep the number out of any log line or traceback
        return f"DialOrder(attempt_id={self.attempt_id}, channel={self.channel.value})"


@dataclass(frozen=True)
class Gathered:
    attempt: Attempt
    facts: ContactFacts
    campaign: Campaign
    phone: Phone | None


def exclusion_as_of(session: Session) -> datetime | None:
    """As-of time of the active exclusion list (the newest if several are marked active)."""
    query = (
        select(ExclusionList.as_of)
        .where(ExclusionList.active.is_(True))
        .order_by(ExclusionList.as_of.desc())
    )
    return session.scalars(query.limit(1)).first()


def gather(session: Session, attempt_id: int, worker_id: str, now: datetime) -> Gathered | None:
    """The facts for one contact this worker claimed; None if it is no longer ours."""
    found = gather_chunk(session, [attempt_id], worker_id, now)
    return found[0] if found else None


def gather_chunk(
    session: Session, attempt_ids: Sequence[int], worker_id: str, now: datetime
) -> list[Gathered]:
    """The facts for a few claimed contacts, read together (a handful of queries in all), in
    the order given; attempts no longer claimed by this worker are left out."""
    loaded = session.scalars(select(Attempt).where(Attempt.id.in_(attempt_ids))).all()
    mine = {
        a.id: a for a in loaded if a.status is AttemptStatus.CLAIMED and a.claimed_by == worker_id
    }
    attempts = [mine[i] for i in attempt_ids if i in mine]
    if not attempts:
        return []
    campaigns = _by_id(session, Campaign, {a.campaign_id for a in attempts})
    persons = _by_id(session, Person, {a.person_id for a in attempts if a.person_id})
    phones = _by_id(session, Phone, {a.phone_id for a in attempts if a.phone_id})
    list_row = session.execute(
        select(ExclusionList.id, ExclusionList.as_of)
        .where(ExclusionList.active.is_(True))
        .order_by(ExclusionList.as_of.desc())
        .limit(1)
    ).first()
    refs = {p.ref_digest for p in persons.values()}
    listed = _listed(session, list_row[0], refs) if list_row else set()
    digests = {p.number_digest for p in phones.values()}
    blocked = _do_not_call(session, digests)
    contacts = _number_contacts(session, digests, now)
    gathered = []
    for attempt in attempts:
        campaign = campaigns.get(attempt.campaign_id)
        if campaign is None:
            continue
        person = persons.get(attempt.person_id) if attempt.person_id else None
        phone = phones.get(attempt.phone_id) if attempt.phone_id else None
        digest = phone.number_digest if phone is not None else None
        today, week = _count_for(contacts.get(digest, []) if digest else [], attempt.id, now)
        facts = ContactFacts(
            now=now,
            campaign_status=campaign.status,
            target_status=person.status if person is not None else None,
            phone_status=phone.status if phone is not None else None,
            needs_phone=attempt.channel in (Channel.IVR, Channel.SMS),
            exclusion_list_as_of=list_row[1] if list_row else None,
            on_exclusion_list=person is not None and person.ref_digest in listed,
            on_do_not_call=digest is not None and digest in blocked,
            channel=attempt.channel,
            phone_kind=phone.kind if phone is not None else None,
            number_contacts_today=today,
            number_contacts_week=week,
        )
        gathered.append(Gathered(attempt, facts, campaign, phone))
    return gathered


def _by_id(session: Session, model: type[T], ids: set[int]) -> dict[int, T]:
    if not ids:
        return {}
    column = model.id
    return {row.id: row for row in session.scalars(select(model).where(column.in_(ids)))}


def dial_order(gathered: Gathered, cipher_for: CipherFor) -> DialOrder:
    """Open the number (memory only) once the interlocks allowed the contact."""
    attempt, phone = gathered.attempt, gathered.phone
    if phone is None:
        raise ValueError(f"attempt {attempt.id} has no phone to contact")
    number = cipher_for(gathered.campaign).open_text(phone.sealed_number, "phone")
    return DialOrder(
        attempt_id=attempt.id,
        key=attempt.idempotency_key,
        channel=attempt.channel,
        to_e164=number,
        number_digest=phone.number_digest,
        campaign_id=attempt.campaign_id,
    )


def _listed(session: Session, list_id: int, refs: set[str]) -> set[str]:
    if not refs:
        return set()
    query = select(ExclusionEntry.ref_digest).where(
        ExclusionEntry.list_id == list_id, ExclusionEntry.ref_digest.in_(refs)
    )
    return set(session.scalars(query))


def _do_not_call(session: Session, digests: set[str]) -> set[str]:
    if not digests:
        return set()
    query = select(DoNotCall.number_digest).where(DoNotCall.number_digest.in_(digests))
    return set(session.scalars(query))


def _number_contacts(
    session: Session, digests: set[str], now: datetime
) -> dict[str, list[tuple[int, datetime]]]:
    """Contacts to these numbers (any target, any campaign) within 7 days either side of now
    (a clock jumped back cannot hide recent contacts), as (attempt id, instant). Filtered
    here rather than in SQL, so the lookup stays on the phone indexes."""
    if not digests:
        return {}
    rows = session.execute(
        select(Phone.id, Phone.number_digest).where(Phone.number_digest.in_(digests))
    ).tuples()
    phones = dict(rows.all())  # (a Result itself has .keys(): dict(result) misreads it)
    query = select(
        Attempt.phone_id,
        Attempt.id,
        Attempt.status,
        Attempt.channel,
        Attempt.started_at,
        Attempt.claimed_at,
    ).where(Attempt.phone_id.in_(list(phones)))
    found: dict[str, list[tuple[int, datetime]]] = {}
    for phone_id, attempt_id, status, channel, started_at, claimed_at in session.execute(
        query
    ).tuples():
        instant = started_at or claimed_at
        if status not in CONTACT_STATUSES or channel is Channel.LETTER or instant is None:
            continue
        if abs(instant - now) < timedelta(days=7) and phone_id is not None:
            found.setdefault(phones[phone_id], []).append((attempt_id, instant))
    return found


def _count_for(
    contacts: list[tuple[int, datetime]], attempt_id: int, now: datetime
) -> tuple[int, int]:
    """(today, within 7 days) for one number, not counting the attempt itself."""
    midnight = now.astimezone(TOKYO).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = midnight + timedelta(days=1)
    others = [instant for other, instant in contacts if other != attempt_id]
    return sum(1 for instant in others if midnight <= instant < tomorrow), len(others)


def next_day_opening(window: CallingWindow, now: datetime) -> datetime | None:
    """The first open instant of a later local day (after a daily cap was reached)."""
    local = now.astimezone(TOKYO)
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return window.next_open(tomorrow)
