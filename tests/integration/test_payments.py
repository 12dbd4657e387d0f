"""Holdout assignment, the payments import and the measured effect (kept through the wipe)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dialer.holdout import assign_holdout
from dialer.wipe import wipe_campaign
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.errors import Conflict, InvalidInput
from kernel.models import AuditEvent, Campaign, Person, TargetStatus
from reports.build import monthly_report
from sync.loader import person_digest
from sync.payments import import_payments
from tests.integration.test_reports_support import KEYRING, load_campaign

ASSIGNED = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def _holdout(database: Database, campaign_id: int, share: float = 0.3, seed: int = 42) -> None:
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.holdout_share = share
        session.flush()
        assign_holdout(session, campaign_id, seed=seed, actor="test", now=ASSIGNED)


def _statuses(database: Database, campaign_id: int) -> dict[str, TargetStatus]:
    with database.read_only() as session:
        rows = session.execute(
            select(Person.ref_digest, Person.status).where(Person.campaign_id == campaign_id)
        )
        return dict(rows.tuples().all())


def _write(
    path: Path,
    rows: list[tuple[str, str, str]],
    header: tuple[str, str, str] = ("宛名番号", "納付額", "納付日"),
) -> Path:
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_holdout_is_seeded_exact_and_audited(database: Database, tmp_path: Path) -> None:
    loaded = load_campaign(database, tmp_path, persons=40)
    _holdout(database, loaded.campaign_id)
    statuses = _statuses(database, loaded.campaign_id)
    held = sorted(d for d, s in statuses.items() if s is TargetStatus.HOLDOUT)
    assert len(held) == round(0.3 * len(statuses))
    with database.unit_of_work() as session, pytest.raises(Conflict):
        assign_holdout(session, loaded.campaign_id, seed=42)
    with database.read_only() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "campaign.holdout_assigned")
        ).one()
    assert event.detail == {"seed": 42, "targets": len(statuses), "holdout": len(held),
                            "contact_group": len(statuses) - len(held)}  # fmt: skip


def test_payments_mark_paid_and_report_the_effect_through_the_wipe(
    database: Database, tmp_path: Path
) -> None:
    loaded = load_campaign(database, tmp_path, persons=60)
    _holdout(database, loaded.campaign_id)
    digest = person_digest(KEYRING)
    statuses = _statuses(database, loaded.campaign_id)
    in_campaign = [n for n in loaded.atena_numbers if digest(n) in statuses]
    holdout = [n for n in in_campaign if statuses[digest(n)] is TargetStatus.HOLDOUT]
    contact = [n for n in in_campaign if statuses[digest(n)] is not TargetStatus.HOLDOUT]
    rows = [(n, "12,000", "令和8年11月10日") for n in contact[:6]]
    rows += [(n, "5000", "2026-11-12") for n in holdout[:1]]
    rows += [(contact[7], "3000", "2026-10-01")]  # before the campaign began: not counted
    rows += [("99999999", "1000", "2026-11-10"), ("12", "abc", "2026-11-10")]
    path = _write(tmp_path / "paid.csv", rows)
    summary = import_payments(database, KEYRING, path, now=ASSIGNED)
    assert (summary.rows_read, summary.rows_rejected) == (10, 1)
    assert (summary.payments_matched, summary.payments_before_start) == (7, 1)
    assert summary.persons_marked_paid == 7
    after = _statuses(database, loaded.campaign_id)
    assert sum(s is TargetStatus.PAID for s in after.values()) == 6
    assert after[digest(holdout[0])] is TargetStatus.HOLDOUT  # the group marker stays
    assert import_payments(database, KEYRING, path).already_imported
    with database.read_only() as session:
        effect = monthly_report(session, "2026-11", [loaded.campaign_id]).total.effect()
    assert (effect.contact.persons, effect.contact.paid, effect.contact.paid_yen) == (
        len(contact),
        6,
        72_000,
    )
    assert (effect.holdout.persons, effect.holdout.paid, effect.holdout.paid_yen) == (
        len(holdout),
        1,
        5_000,
    )
    interval = effect.interval
    assert interval is not None and interval.low < effect.difference < interval.high  # type: ignore[operator]
    wipe_campaign(database, LocalCoordination(), tmp_path / "var", loaded.campaign_id, actor="test",
                  force=True, reason="test")  # fmt: skip
    with database.read_only() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 0
        assert monthly_report(session, "2026-11", [loaded.campaign_id]).total.effect() == effect


def test_payments_layout_and_missing_columns(database: Database, tmp_path: Path) -> None:
    loaded = load_campaign(database, tmp_path, persons=20)
    layout = tmp_path / "bank.toml"
    layout.write_text('kind = "payments"\nname = "bank"\n[columns]\n"あて名CD" = "宛名番号"\n'
                      '"収納額" = "納付額"\n"収納日" = "納付日"\n', encoding="utf-8")  # fmt: skip
    number = loaded.atena_numbers[0]
    path = _write(
        tmp_path / "bank.csv", [(number, "100", "R8.11.05")], ("あて名CD", "収納額", "収納日")
    )
    summary = import_payments(database, KEYRING, path, layout=str(layout), now=ASSIGNED)
    assert summary.rows_read == 1 and summary.rows_rejected == 0
    with pytest.raises(InvalidInput, match="納付日"):
        import_payments(
            database, KEYRING, _write(tmp_path / "bad.csv", [], ("宛名番号", "納付額", "日付"))
        )


def test_holdout_only_before_any_contact(database: Database, tmp_path: Path) -> None:
    from kernel.models import Attempt, Channel

    loaded = load_campaign(database, tmp_path, persons=10)
    with database.unit_of_work() as session:
        session.add(Attempt(campaign_id=loaded.campaign_id, channel=Channel.IVR,
                            scheduled_at=ASSIGNED, idempotency_key="first-call"))  # fmt: skip
    with pytest.raises(Conflict, match="before any contact"):
        _holdout(database, loaded.campaign_id)


def test_target_snapshot_survives_a_late_refresh_after_the_wipe(
    database: Database, tmp_path: Path
) -> None:
    from kernel import aggregates

    loaded = load_campaign(database, tmp_path, persons=20)
    with database.read_only() as session:
        before = monthly_report(session, "2026-11", [loaded.campaign_id]).total.targets
    wipe_campaign(database, LocalCoordination(), tmp_path / "var", loaded.campaign_id, actor="test",
                  force=True, reason="test")  # fmt: skip
    with database.unit_of_work() as session:
        aggregates.record_targets_loaded(session, loaded.campaign_id, ASSIGNED)
    with database.read_only() as session:
        assert monthly_report(session, "2026-11", [loaded.campaign_id]).total.targets == before > 0
