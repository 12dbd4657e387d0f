"""Payments received (収納データ): who paid since the campaign began, matched by digest.

The standard layout is a CSV/TSV with the columns 宛名番号, 納付額, 納付日 (any order, CP932 or
UTF-8); other systems' files are described by a TOML file in ``config/layouts/`` with
``kind = "payments"``, an optional ``encoding`` and ``[columns]`` mapping their headers onto
those three names. Each 宛名番号 is digested as the importer does, so a payment is matched to
its target without storing or logging the number. A payment on or after the campaign's start
(the holdout draw, else the start, else creation) marks the person: ``paid_on``/``paid_yen``,
and an ACTIVE target becomes PAID (the dialer stops). Then the campaign's PII-free effect
counters (paid persons and amount of the contact group and of the holdout) are recomputed.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kernel import aggregates, audit
from kernel.db import Database
from kernel.errors import ConfigurationError, Conflict, InvalidInput
from kernel.models import Campaign, CampaignStatus, ImportBatch, Person, TargetStatus, utcnow
from kernel.pii import KeyRing
from sync import normalize
from sync.layouts import header_key, layouts_dir
from sync.loader import person_digest
from sync.readers import detect_encoding, sha256_file

FIELDS = {"宛名番号": "atena_no", "納付額": "amount", "納付日": "paid_on"}


@dataclass(frozen=True)
class PaymentLayout:
    name: str
    columns: dict[str, str]  # header_key(file header) -> field key
    encoding: str | None = None


STANDARD = PaymentLayout("standard", {header_key(k): v for k, v in FIELDS.items()})


@dataclass(frozen=True)
class Payment:
    atena_no: str
    amount: int
    paid_on: date


@dataclass
class PaymentSummary:
    file_sha256: str
    rows_read: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    payments_matched: int = 0
    payments_before_start: int = 0
    persons_marked_paid: int = 0
    campaigns: list[int] = field(default_factory=list)
    already_imported: bool = False


def load_payment_layout(name: str | None) -> PaymentLayout:
    """``None``/``standard`` or ``config/layouts/NAME.toml`` (``kind = "payments"``)."""
    if name is None or name == "standard":
        return STANDARD
    path = Path(name) if name.endswith(".toml") else layouts_dir() / f"{name}.toml"
    if not path.is_file():
        raise ConfigurationError(f"payments layout {name!r} not found ({path})")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("kind") != "payments":
        raise ConfigurationError(f'{path}: not a payments layout (kind = "payments")')
    columns: dict[str, str] = {}
    for header, target in dict(data.get("columns", {})).items():
        if target not in FIELDS:
            raise ConfigurationError(f"{path}: column {header!r} maps to unknown {target!r}")
        columns[header_key(header)] = FIELDS[target]
    if set(columns.values()) != set(FIELDS.values()):
        raise ConfigurationError(f"{path}: map all of {', '.join(FIELDS)}")
    return PaymentLayout(str(data.get("name", path.stem)), columns, data.get("encoding"))


def _rows(path: Path, layout: PaymentLayout) -> Iterator[tuple[int, dict[str, str]]]:
    encoding = detect_encoding(path, layout.encoding)
    text = path.read_text(encoding=encoding)
    first = text.splitlines()[0] if text else ""
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [layout.columns.get(header_key(cell)) for cell in next(reader, [])]
    missing = set(FIELDS.values()) - set(header)
    if missing:
        names = [label for label, key in FIELDS.items() if key in missing]
        raise InvalidInput(f"{path.name}: 見出し行に {'、'.join(names)} がありません")
    for line_no, cells in enumerate(reader, start=2):
        if any(cell.strip() for cell in cells):
            yield line_no, {k: c for k, c in zip(header, cells, strict=False) if k}


def parse_payment(values: dict[str, str]) -> Payment:
    """One row: 宛名番号, 納付額 (positive yen) and 納付日 (和暦 or 西暦)."""
    amount = normalize.parse_amount(values.get("amount", ""))
    if amount <= 0:
        raise normalize.NormalizationError("invalid_amount", "納付額が0以下です")
    return Payment(
        normalize.normalize_person_id(values.get("atena_no", "")),
        amount,
        normalize.parse_date(values.get("paid_on", "")),
    )


def read_payments(path: Path, layout: PaymentLayout, summary: PaymentSummary) -> list[Payment]:
    payments = []
    for _line, values in _rows(path, layout):
        summary.rows_read += 1
        try:
            payments.append(parse_payment(values))
        except normalize.NormalizationError as error:
            summary.rows_rejected += 1
            reason = getattr(error, "code", "invalid")
            summary.rejected_by_reason[reason] = summary.rejected_by_reason.get(reason, 0) + 1
    return payments


def campaign_start(campaign: Campaign) -> date:
    """From when a payment counts as 'paid since': the holdout draw, start or creation."""
    instant = campaign.holdout_assigned_at or campaign.started_at or campaign.created_at
    return aggregates.local_day(instant)


def _apply(
    session: Session, campaign: Campaign, by_ref: dict[str, list[Payment]]
) -> tuple[int, int, int]:
    """Mark the campaign's paying persons; (matched, before start, newly paid)."""
    matched = early = newly = 0
    start = campaign_start(campaign)
    persons = session.scalars(
        select(Person).where(Person.campaign_id == campaign.id, Person.ref_digest.in_(list(by_ref)))
    )
    for person in persons:
        counted = [p for p in by_ref[person.ref_digest] if p.paid_on >= start]
        early += len(by_ref[person.ref_digest]) - len(counted)
        if not counted:
            continue
        matched += len(counted)
        newly += person.paid_on is None
        first = min(p.paid_on for p in counted)
        person.paid_on = min(first, person.paid_on or first)
        person.paid_yen = (person.paid_yen or 0) + sum(p.amount for p in counted)
        if person.status is TargetStatus.ACTIVE:
            person.status = TargetStatus.PAID
    return matched, early, newly


def record_effect(session: Session, campaign_id: int, at: datetime) -> None:
    """Recompute the campaign's effect counters from its persons (before the wipe only)."""
    held = Person.status == TargetStatus.HOLDOUT
    counts: dict[aggregates.Key, int] = {}
    for group, condition in (("contact", ~held), ("holdout", held)):
        query = select(
            func.count(), func.count(Person.paid_on), func.coalesce(func.sum(Person.paid_yen), 0)
        )
        persons, paid, paid_yen = session.execute(
            query.where(Person.campaign_id == campaign_id, condition)
        ).one()
        counts[(aggregates.TOTAL, f"effect.{group}.persons")] = int(persons)
        counts[(aggregates.TOTAL, f"effect.{group}.paid")] = int(paid)
        counts[(aggregates.TOTAL, f"effect.{group}.paid_yen")] = int(paid_yen)
    aggregates.replace_snapshot(
        session,
        day=aggregates.local_day(at),
        campaign_id=campaign_id,
        prefix="effect.",
        counts=counts,
    )


def _campaigns(session: Session, campaign_id: int | None) -> list[Campaign]:
    query = select(Campaign).where(Campaign.status != CampaignStatus.WIPED)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
    found = list(session.scalars(query.order_by(Campaign.id)))
    if campaign_id is not None and not found:
        raise Conflict(f"campaign {campaign_id} does not exist or is wiped")
    return found


def import_payments(
    database: Database,
    keyring: KeyRing,
    path: Path,
    *,
    layout: str | None = None,
    campaign_id: int | None = None,
    actor: str = "cli",
    now: datetime | None = None,
) -> PaymentSummary:
    """Read a payments file and mark who paid in each (or one) campaign not yet wiped."""
    if not path.is_file():
        raise InvalidInput(f"{path}: ファイルがありません")
    summary = PaymentSummary(sha256_file(path))
    payments = read_payments(path, load_payment_layout(layout), summary)
    digest = person_digest(keyring)
    by_ref: dict[str, list[Payment]] = {}
    for payment in payments:
        by_ref.setdefault(digest(payment.atena_no), []).append(payment)
    when = now or utcnow()
    with database.unit_of_work() as session:
        if session.scalar(
            select(ImportBatch.id).where(ImportBatch.file_sha256 == summary.file_sha256)
        ):
            summary.already_imported = True
            return summary
        for campaign in _campaigns(session, campaign_id):
            matched, early, newly = _apply(session, campaign, by_ref)
            summary.payments_matched += matched
            summary.payments_before_start += early
            summary.persons_marked_paid += newly
            summary.campaigns.append(campaign.id)
            session.flush()
            record_effect(session, campaign.id, when)
        _record_batch(session, summary, actor)
    return summary


def _record_batch(session: Session, summary: PaymentSummary, actor: str) -> None:
    batch = ImportBatch(
        campaign_id=summary.campaigns[0] if len(summary.campaigns) == 1 else None,
        source_kind="payments",
        layout="payments",
        file_sha256=summary.file_sha256,
        rows_read=summary.rows_read,
        rows_loaded=summary.rows_read - summary.rows_rejected,
        rows_rejected=summary.rows_rejected,
        summary={"payments_matched": summary.payments_matched, "campaigns": summary.campaigns},
        imported_by=actor[:64],
    )
    session.add(batch)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="sync.payments_imported",
        object_type="import",
        object_id=batch.id,
        detail={
            "rows_read": summary.rows_read,
            "rows_rejected": summary.rows_rejected,
            "payments_matched": summary.payments_matched,
            "persons_marked_paid": summary.persons_marked_paid,
            "campaigns": len(summary.campaigns),
        },
    )
