"""A campaign for the contract suite: one person with sealed PII, a mobile phone, attempts.

Everything personal is sealed under the campaign's own data key exactly as ``sync.loader``
seals an import (the person as one ``pii`` record, the number as ``phone`` plus its keyed
digest), so the real :class:`~dialer.call_session.CallSession` opens it the production way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Channel,
    DisclosureLevel,
    Person,
    Phone,
    PhoneKind,
    Receivable,
)
from kernel.pii import KeyRing, PiiCipher

MASTER_SECRET = "contract-suite-master-secret-0123456789abcdef"
RESIDENT_E164 = "+819012345678"
CALLER_ID = "+81312345678"
SEEDED_AT = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # Wednesday 10:00 in Tokyo
PII = {
    "atena_no": "000123456",
    "name": "山田 太郎",
    "name_kana": "ヤマダ タロウ",
    "birth_date": "1980-04-15",
    "gender": "1",
    "postal_code": "1000001",
    "address": "架空市中央1-2-3",
    "language": "ja",
}


@dataclass(frozen=True)
class Seeded:
    campaign_id: int
    person_id: int
    phone_id: int
    phone_digest: str
    attempt_keys: dict[str, str]  # scenario / attempt name -> idempotency key
    attempt_ids: dict[str, int]


def running_campaign(
    session: Session,
    keyring: KeyRing,
    *,
    name: str,
    disclosure: DisclosureLevel = DisclosureLevel.NOTICE,
    created_by: str = "tests",
) -> tuple[Campaign, PiiCipher]:
    """A running campaign with its own data key, and the cipher for that key."""
    campaign = Campaign(
        name=name,
        status=CampaignStatus.RUNNING,
        disclosure_level=disclosure,
        created_by=created_by,
        as_of=date(2026, 11, 1),
    )
    session.add(campaign)
    session.flush()
    campaign.wrapped_data_key = keyring.new_wrapped_data_key(campaign.id)
    return campaign, keyring.cipher(campaign.wrapped_data_key, campaign.id)


def add_target(
    session: Session,
    keyring: KeyRing,
    cipher: PiiCipher,
    campaign_id: int,
    *,
    pii: dict[str, str],
    number: str,
    phone_kind: PhoneKind = PhoneKind.MOBILE,
) -> tuple[Person, Phone]:
    """One person (sealed ``pii``), their phone and one overdue receivable, as sync loads them."""
    person = Person(
        campaign_id=campaign_id,
        ref_digest=keyring.digest("person", pii["atena_no"]),
        sealed_pii=cipher.seal_record(pii, "pii"),
        has_kana=True,
        channel=Channel.IVR,
        unpaid_total_yen=38_500,
    )
    session.add(person)
    session.flush()
    phone = Phone(
        person_id=person.id,
        campaign_id=campaign_id,
        sealed_number=cipher.seal_text(number, "phone"),
        number_digest=keyring.digest("phone", number),
        kind=phone_kind,
    )
    session.add(phone)
    session.add(
        Receivable(
            person_id=person.id,
            campaign_id=campaign_id,
            department="税務課",
            kind="市民税",
            fiscal_year=2026,
            period="1",
            due_date=date(2026, 6, 30),
            unpaid_yen=38_500,
        )
    )
    session.flush()
    return person, phone


def seed_campaign(
    database: Database,
    keyring: KeyRing,
    attempt_names: Sequence[str],
    *,
    disclosure: DisclosureLevel = DisclosureLevel.NOTICE,
    phone_kind: PhoneKind = PhoneKind.MOBILE,
    number: str = RESIDENT_E164,
) -> Seeded:
    """A running campaign with one target and one claimed IVR attempt per name."""
    with database.unit_of_work() as session:
        campaign, cipher = running_campaign(
            session, keyring, name="contract", disclosure=disclosure
        )
        person, phone = add_target(
            session, keyring, cipher, campaign.id, pii=PII, number=number, phone_kind=phone_kind
        )
        keys, ids = {}, {}
        for position, name in enumerate(attempt_names, start=1):
            attempt = Attempt(
                campaign_id=campaign.id,
                person_id=person.id,
                phone_id=phone.id,
                channel=Channel.IVR,
                sequence_no=position,
                status=AttemptStatus.CLAIMED,
                scheduled_at=SEEDED_AT,
                idempotency_key=f"contract-{campaign.id}-{position}",
            )
            session.add(attempt)
            session.flush()
            keys[name], ids[name] = attempt.idempotency_key, attempt.id
        return Seeded(campaign.id, person.id, phone.id, phone.number_digest, keys, ids)
