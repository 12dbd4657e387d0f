"""The migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kernel import migrate
from kernel.db import Database
from kernel.models import (
    Attempt,
    Base,
    Campaign,
    CampaignStatus,
    Channel,
    Person,
    Phone,
    PhoneKind,
    Receivable,
)


def test_migrations_match_models(database: Database) -> None:
    assert migrate.current_revision(database) == migrate.head_revision()
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_downgrade_to_base_and_back(database: Database) -> None:
    migrate.downgrade(database, "base")
    assert migrate.current_revision(database) is None
    migrate.upgrade(database)
    assert migrate.current_revision(database) == migrate.head_revision()


def _campaign(database: Database) -> int:
    with database.unit_of_work() as session:
        campaign = Campaign(name="R7 初期滞納 11月", created_by="system")
        session.add(campaign)
        session.flush()
        return campaign.id


def test_person_with_phones_and_receivables_round_trip(database: Database) -> None:
    campaign_id = _campaign(database)
    with database.unit_of_work() as session:
        person = Person(
            campaign_id=campaign_id,
            ref_digest="a" * 64,
            sealed_pii=b"\x01sealed",
            channel=Channel.IVR,
        )
        person.phones.append(
            Phone(
                campaign_id=campaign_id,
                sealed_number=b"x",
                number_digest="b" * 64,
                kind=PhoneKind.MOBILE,
                verified_on=date(2025, 4, 1),
            )
        )
        person.receivables.append(
            Receivable(
                campaign_id=campaign_id,
                department="納税課",
                kind="市県民税",
                fiscal_year=2026,
                period="1",
                due_date=date(2026, 6, 30),
                unpaid_yen=12_300,
            )
        )
        session.add(person)
    with database.read_only() as session:
        loaded = session.scalars(select(Person)).one()
        assert loaded.phones[0].kind is PhoneKind.MOBILE
        assert loaded.receivables[0].kind == "市県民税"
        assert loaded.receivables[0].unpaid_yen == 12_300
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status is CampaignStatus.DRAFT


def test_datetimes_come_back_aware_in_utc(database: Database) -> None:
    campaign_id = _campaign(database)
    tokyo_nine = datetime(2026, 11, 24, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    with database.unit_of_work() as session:
        session.add(
            Attempt(
                campaign_id=campaign_id,
                channel=Channel.IVR,
                scheduled_at=tokyo_nine,
                idempotency_key="k1",
            )
        )
    with database.read_only() as session:
        stored = session.scalars(select(Attempt.scheduled_at)).one()
    assert stored.tzinfo is not None
    assert stored == tokyo_nine
    assert stored.astimezone(UTC).hour == 0


def test_naive_datetimes_are_refused(database: Database) -> None:
    campaign_id = _campaign(database)
    with pytest.raises(Exception, match="naive"), database.unit_of_work() as session:
        session.add(
            Attempt(
                campaign_id=campaign_id,
                channel=Channel.IVR,
                scheduled_at=datetime(2026, 11, 24, 9),
                idempotency_key="k2",
            )
        )


def test_idempotency_key_is_unique(database: Database) -> None:
    campaign_id = _campaign(database)
    when = datetime(2026, 11, 24, tzinfo=UTC)
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        for _ in range(2):
            session.add(
                Attempt(
                    campaign_id=campaign_id,
                    channel=Channel.SMS,
                    scheduled_at=when,
                    idempotency_key="same",
                )
            )
            session.flush()


def test_enum_columns_reject_unknown_values(database: Database) -> None:
    campaign_id = _campaign(database)
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE campaigns SET status = 'exploded' WHERE id = {campaign_id}"
        )
