"""What the dispatcher reads before each contact, in the transaction that decides it.

:func:`gather` collects a :class:`~dialer.interlocks.ContactFacts` snapshot for one claimed
attempt (campaign and target status, the phone, the active exclusion list and whether the
target is on it, the do-not-call list, contacts already made to that number today and in the
last 7 days). Only after every interlock passed does :func:`dial_order` open the sealed
number, in memory, for the carrier request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
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
CONTACT_STATUSES = (AttemptStatus.COMPLETED, AttemptStatus.IN_PROGRESS, AttemptStatus.CLAIMED)


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
    """The facts for a contact this worker claimed; None if it is no longer ours to make."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None or attempt.status is not AttemptStatus.CLAIMED:
        return None
    if attempt.claimed_by != worker_id:
        return None
    campaign = session.get(Campaign, attempt.campaign_id)
    if campaign is None:
        return None
    person = session.get(Person, attempt.person_id) if attempt.person_id else None
    phone = session.get(Phone, attempt.phone_id) if attempt.phone_id else None
    list_row = session.execute(
        select(ExclusionList.id, ExclusionList.as_of)
        .where(ExclusionList.active.is_(True))
        .order_by(ExclusionList.as_of.desc())
        .limit(1)
    ).first()
    digest = phone.number_digest if phone is not None else None
    today, week = _number_contacts(session, digest, attempt.id, now)
    facts = ContactFacts(
        now=now,
        campaign_status=campaign.status,
        target_status=person.status if person is not None else None,
        phone_status=phone.status if phone is not None else None,
        needs_phone=attempt.channel in (Channel.IVR, Channel.SMS),
        exclusion_list_as_of=list_row[1] if list_row else None,
        on_exclusion_list=bool(
            list_row and person and _listed(session, list_row[0], person.ref_digest)
        ),
        on_do_not_call=digest is not None and _do_not_call(session, digest),
        channel=attempt.channel,
        phone_kind=phone.kind if phone is not None else None,
        number_contacts_today=today,
        number_contacts_week=week,
    )
    return Gathered(attempt, facts, campaign, phone)


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


def _listed(session: Session, list_id: int, ref_digest: str) -> bool:
    query = select(ExclusionEntry.id).where(
        ExclusionEntry.list_id == list_id, ExclusionEntry.ref_digest == ref_digest
    )
    return session.scalars(query.limit(1)).first() is not None


def _do_not_call(session: Session, digest: str) -> bool:
    query = select(DoNotCall.id).where(DoNotCall.number_digest == digest)
    return session.scalars(query.limit(1)).first() is not None


def _number_contacts(
    session: Session, digest: str | None, attempt_id: int, now: datetime
) -> tuple[int, int]:
    """Contacts to this number (any target of any campaign) on today's local day and within
    7 days either side of now (a clock jumped back cannot hide recent contacts)."""
    if digest is None:
        return 0, 0
    local_midnight = now.astimezone(TOKYO).replace(hour=0, minute=0, second=0, microsecond=0)
    started = func.coalesce(Attempt.started_at, Attempt.claimed_at)
    base = (
        select(started)
        .join(Phone, Phone.id == Attempt.phone_id)
        .where(
            Phone.number_digest == digest,
            Attempt.id != attempt_id,
            Attempt.status.in_(CONTACT_STATUSES),
            Attempt.channel.in_((Channel.IVR, Channel.SMS, Channel.OPERATOR)),
            started > now - timedelta(days=7),
            started < now + timedelta(days=7),
        )
    )
    instants = [instant for instant in session.scalars(base) if instant is not None]
    next_midnight = local_midnight + timedelta(days=1)
    today = sum(1 for instant in instants if local_midnight <= instant < next_midnight)
    return today, len(instants)


def next_day_opening(window: CallingWindow, now: datetime) -> datetime | None:
    """The first open instant of a later local day (after a daily cap was reached)."""
    local = now.astimezone(TOKYO)
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return window.next_open(tomorrow)
