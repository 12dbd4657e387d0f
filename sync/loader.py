"""Database writes of an import, inside the caller's unit of work. Bulk inserts in chunks.

Every personal value is sealed under the campaign's data key before it reaches the database:
the person as one record (``pii``), each phone number (``phone``, plus a keyed digest for
lookups) and each notice number (``notice_number``). ``Person.ref_digest`` is the keyed
digest of the 宛名番号 (purpose ``person``), the same digest the exclusion list stores, so
the dialer can re-check a target against the latest list without decrypting anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from kernel import audit
from kernel.errors import Conflict, NotFound
from kernel.models import (
    Campaign,
    CampaignStatus,
    Channel,
    DoNotCall,
    ExclusionEntry,
    ExclusionList,
    ImportBatch,
    Person,
    Phone,
    PhoneStatus,
    Receivable,
)
from kernel.pii import KeyRing, PiiCipher
from sync.eligibility import choose_channel
from sync.merge import PersonGroup
from sync.rows import PhoneEntry, person_key

CHUNK = 1000
INT32_MAX = 2_147_483_647
T = TypeVar("T")


@dataclass(frozen=True)
class TargetPhone:
    entry: PhoneEntry
    digest: str
    status: PhoneStatus


@dataclass(frozen=True)
class Target:
    group: PersonGroup
    ref_digest: str
    channel: Channel
    phones: tuple[TargetPhone, ...]


@dataclass(frozen=True)
class LoadCounts:
    persons: int
    receivables: int
    phones: int
    shared_household_phones: int


@dataclass(frozen=True)
class PhoneStatuses:
    """A person's callable phones with their digests; numbers on the do-not-call list are
    kept as opted out (the dialer skips them), so the record of the number is not lost."""

    do_not_call: set[str]
    digest: Callable[[str], str]

    def __call__(self, group: PersonGroup) -> tuple[TargetPhone, ...]:
        phones = []
        for entry in group.usable_phones():
            digest = self.digest(entry.e164 or "")
            blocked = digest in self.do_not_call
            status = PhoneStatus.OPTED_OUT if blocked else PhoneStatus.USABLE
            phones.append(TargetPhone(entry, digest, status))
        return tuple(phones)


def make_target(group: PersonGroup, ref: str, phones: tuple[TargetPhone, ...]) -> Target:
    """A target on its channel: only phones not on the do-not-call list count as usable."""
    usable = [p.entry.kind for p in phones if p.status is PhoneStatus.USABLE and p.entry.kind]
    return Target(group, ref, choose_channel(usable, group.person.name_kana is not None), phones)


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def person_digest(keyring: KeyRing) -> Callable[[str], str]:
    """``Person.ref_digest`` and ``ExclusionEntry.ref_digest`` of a 宛名番号 (padding ignored)."""
    return lambda atena_no: keyring.digest("person", person_key(atena_no))


def phone_digest(keyring: KeyRing) -> Callable[[str], str]:
    """A cached digest of E.164 numbers (households repeat numbers; HKDF is not free)."""
    return functools.lru_cache(maxsize=65_536)(functools.partial(keyring.digest, "phone"))


def open_campaign(
    session: Session,
    keyring: KeyRing,
    *,
    campaign_id: int | None,
    name: str,
    as_of: date,
    actor: str,
) -> tuple[Campaign, PiiCipher]:
    """The draft campaign to load into: the given one, or a new one with a fresh data key."""
    if campaign_id is not None:
        campaign = session.scalars(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        ).first()
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} does not exist")
        if campaign.status is not CampaignStatus.DRAFT or campaign.wrapped_data_key is None:
            raise Conflict(f"campaign {campaign_id} is {campaign.status.value}; only drafts load")
        return campaign, keyring.cipher(campaign.wrapped_data_key, campaign.id)
    campaign = Campaign(name=name[:200], created_by=actor, as_of=as_of)
    session.add(campaign)
    session.flush()
    campaign.wrapped_data_key = keyring.new_wrapped_data_key(campaign.id)
    session.flush()
    return campaign, keyring.cipher(campaign.wrapped_data_key, campaign.id)


def active_exclusions(session: Session) -> set[str]:
    query = (
        select(ExclusionEntry.ref_digest)
        .join(ExclusionList, ExclusionEntry.list_id == ExclusionList.id)
        .where(ExclusionList.active.is_(True))
    )
    return set(session.scalars(query))


def do_not_call_digests(session: Session) -> set[str]:
    return set(session.scalars(select(DoNotCall.number_digest)))


def campaign_refs(session: Session, campaign_id: int) -> set[str]:
    return set(session.scalars(select(Person.ref_digest).where(Person.campaign_id == campaign_id)))


def start_batch(
    session: Session, *, campaign_id: int, kind: str, layout: str, sha256: str, actor: str
) -> ImportBatch:
    """The import's row, inserted first: its unique SHA-256 makes a concurrent duplicate fail
    here instead of after all the work."""
    batch = ImportBatch(
        campaign_id=campaign_id,
        source_kind=kind[:16],
        layout=layout[:64],
        file_sha256=sha256,
        imported_by=actor[:64],
    )
    session.add(batch)
    session.flush()
    return batch


def finish_batch(session: Session, batch: ImportBatch, summary: dict[str, Any], actor: str) -> None:
    batch.rows_read = summary["rows_read"]
    batch.rows_loaded = summary["rows_loaded"]
    batch.rows_rejected = summary["rows_rejected"]
    batch.summary = summary
    keys = ("rows_read", "rows_loaded", "rows_rejected", "persons_loaded", "receivables_loaded")
    counts = {key: summary[key] for key in keys}
    counts["persons_excluded"] = sum(summary["persons_excluded"].values())
    counts["campaign_id"] = batch.campaign_id
    audit.record(
        session,
        actor=actor,
        action="sync.imported",
        object_type="import",
        object_id=batch.id,
        detail=counts,
    )


def _person_row(
    target: Target, campaign_id: int, batch_id: int, cipher: PiiCipher
) -> dict[str, Any]:
    person = target.group.person
    record = {
        "atena_no": person.atena_no,
        "name": person.name,
        "name_kana": person.name_kana,
        "birth_date": person.birth_date,
        "gender": person.gender,
        "postal_code": person.postal_code,
        "address": person.address,
        "language": person.language,
    }
    return {
        "campaign_id": campaign_id,
        "import_id": batch_id,
        "ref_digest": target.ref_digest,
        "sealed_pii": cipher.seal_record(record, "pii"),
        "has_kana": person.name_kana is not None,
        "language": person.language,
        "channel": target.channel,
        "unpaid_total_yen": min(target.group.unpaid_total_yen, INT32_MAX),
    }


def _receivable_rows(
    target: Target, person_id: int, campaign_id: int, cipher: PiiCipher
) -> Iterator[dict[str, Any]]:
    for item in target.group.items.values():
        notice = item.notice_number
        yield {
            "person_id": person_id,
            "campaign_id": campaign_id,
            "department": item.department,
            "kind": item.kind,
            "fiscal_year": item.fiscal_year,
            "period": item.period,
            "sealed_notice_number": cipher.seal_text(notice, "notice_number") if notice else None,
            "due_date": item.due_date,
            "unpaid_yen": item.unpaid_yen,
            "late_fee_yen": item.late_fee_yen,
            "demand_date": item.demand_date,
            "installment": item.installment,
            "account_transfer": item.account_transfer,
        }


def _phone_rows(
    target: Target, person_id: int, campaign_id: int, cipher: PiiCipher
) -> Iterator[dict[str, Any]]:
    for position, phone in enumerate(target.phones, start=1):
        assert phone.entry.e164 is not None and phone.entry.kind is not None
        yield {
            "person_id": person_id,
            "campaign_id": campaign_id,
            "position": position,
            "sealed_number": cipher.seal_text(phone.entry.e164, "phone"),
            "number_digest": phone.digest,
            "kind": phone.entry.kind,
            "verified_on": phone.entry.verified_on,
            "status": phone.status,
            "shared_household": False,
        }


def insert_targets(
    session: Session,
    targets: Iterable[Target],
    *,
    campaign_id: int,
    batch_id: int,
    cipher: PiiCipher,
) -> LoadCounts:
    """Insert persons (ids returned in order), then their receivables and phones, per chunk."""
    persons = receivables = phones = 0
    statement = insert(Person).returning(Person.id, sort_by_parameter_order=True)
    for chunk in chunked(targets):
        rows = [_person_row(target, campaign_id, batch_id, cipher) for target in chunk]
        ids: Sequence[int] = session.scalars(statement, rows).all()
        items = [
            r
            for t, i in zip(chunk, ids, strict=True)
            for r in _receivable_rows(t, i, campaign_id, cipher)
        ]
        numbers = [
            r
            for t, i in zip(chunk, ids, strict=True)
            for r in _phone_rows(t, i, campaign_id, cipher)
        ]
        session.execute(insert(Receivable), items)
        if numbers:
            session.execute(insert(Phone), numbers)
        persons, receivables, phones = (
            persons + len(ids),
            receivables + len(items),
            phones + len(numbers),
        )
    return LoadCounts(persons, receivables, phones, flag_households(session, campaign_id))


def flag_households(session: Session, campaign_id: int) -> int:
    """Mark every phone number that more than one target of the campaign shares."""
    shared = (
        select(Phone.number_digest)
        .where(Phone.campaign_id == campaign_id)
        .group_by(Phone.number_digest)
        .having(func.count(func.distinct(Phone.person_id)) > 1)
    )
    result = session.execute(
        update(Phone)
        .where(Phone.campaign_id == campaign_id, Phone.number_digest.in_(shared))
        .values(shared_household=True)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
