"""Database writes of an import, inside the caller's unit of work. Bulk inserts in chunks.

Every personal value is sealed under the campaign's data key before it reaches the database:
the person as one record (``pii``), each phone number (``phone``, plus a keyed digest for
lookups) and each notice number (``notice_number``). ``Person.ref_digest`` is the keyed
digest of the 宛名番号 (purpose ``person``), the same digest the exclusion list stores, so
the dialer can re-check a target against the latest list without decrypting anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Table, func, select, update
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
from sync.bulk import BulkInsert, reserve_ids
from sync.eligibility import choose_channel
from sync.merge import PersonGroup
from sync.rows import PhoneEntry, person_key

CHUNK = 1000
BULK_CHUNK = 10_000
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
    digest = keyring.digester("person")
    return lambda atena_no: digest(person_key(atena_no))


def phone_digest(keyring: KeyRing) -> Callable[[str], str]:
    """A cached digest of E.164 numbers (households repeat numbers)."""
    return functools.lru_cache(maxsize=65_536)(keyring.digester("phone"))


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


PERSON_COLUMNS = (
    "id", "campaign_id", "import_id", "ref_digest", "sealed_pii", "has_kana", "language",
    "channel", "unpaid_total_yen",
)  # fmt: skip
RECEIVABLE_COLUMNS = (
    "person_id", "campaign_id", "department", "kind", "fiscal_year", "period",
    "sealed_notice_number", "due_date", "unpaid_yen", "late_fee_yen", "demand_date",
    "installment", "account_transfer",
)  # fmt: skip
PHONE_COLUMNS = (
    "person_id", "campaign_id", "position", "sealed_number", "number_digest", "kind",
    "verified_on", "status", "shared_household",
)  # fmt: skip


@dataclass
class _Rows:
    """Turns targets into the row tuples of persons, receivables and phones, sealing every
    personal value under the campaign's data key."""

    campaign_id: int
    batch_id: int
    seal_pii: Callable[[dict[str, Any]], bytes]
    seal_notice: Callable[[str], bytes]
    seal_phone: Callable[[str], bytes]

    def person(self, target: Target, person_id: int) -> tuple[Any, ...]:
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
        unpaid = min(target.group.unpaid_total_yen, INT32_MAX)
        return (
            person_id, self.campaign_id, self.batch_id, target.ref_digest,
            self.seal_pii(record), person.name_kana is not None, person.language,
            target.channel, unpaid,
        )  # fmt: skip

    def receivables(self, target: Target, person_id: int) -> Iterator[tuple[Any, ...]]:
        for item in target.group.items:
            notice = item.notice_number
            yield (
                person_id, self.campaign_id, item.department, item.kind, item.fiscal_year,
                item.period, self.seal_notice(notice) if notice else None, item.due_date,
                item.unpaid_yen, item.late_fee_yen, item.demand_date, item.installment,
                item.account_transfer,
            )  # fmt: skip

    def phones(self, target: Target, person_id: int) -> Iterator[tuple[Any, ...]]:
        for position, phone in enumerate(target.phones, start=1):
            assert phone.entry.e164 is not None and phone.entry.kind is not None
            yield (
                person_id, self.campaign_id, position, self.seal_phone(phone.entry.e164),
                phone.digest, phone.entry.kind, phone.entry.verified_on, phone.status, False,
            )  # fmt: skip


def insert_targets(
    session: Session,
    targets: Iterable[Target],
    *,
    campaign_id: int,
    batch_id: int,
    cipher: PiiCipher,
) -> LoadCounts:
    """Insert persons (with reserved ids), then their receivables and phones, per chunk."""
    connection = session.connection()
    tables = (Person.__table__, Receivable.__table__, Phone.__table__)
    person_table, receivable_table, phone_table = (
        table for table in tables if isinstance(table, Table)
    )
    writers = (
        BulkInsert(connection, person_table, PERSON_COLUMNS),
        BulkInsert(connection, receivable_table, RECEIVABLE_COLUMNS),
        BulkInsert(connection, phone_table, PHONE_COLUMNS),
    )
    rows = _Rows(
        campaign_id,
        batch_id,
        cipher.record_sealer("pii"),
        cipher.sealer("notice_number"),
        cipher.sealer("phone"),
    )
    persons = receivables = phones = 0
    for chunk in chunked(targets, BULK_CHUNK):
        ids = reserve_ids(connection, person_table, len(chunk))
        pairs = list(zip(chunk, ids, strict=True))
        persons += writers[0].insert(rows.person(t, i) for t, i in pairs)
        receivables += writers[1].insert(r for t, i in pairs for r in rows.receivables(t, i))
        phones += writers[2].insert(r for t, i in pairs for r in rows.phones(t, i))
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
