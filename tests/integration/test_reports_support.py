"""Shared builders for the report, letter and payment tests (no tests here).

Campaigns are loaded through the real importer from the synthetic export, and contacts are
written as real Attempt/HandOff/CallbackRequest rows counted through ``kernel.aggregates``.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from kernel import aggregates
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Campaign,
    CampaignStatus,
    Channel,
    HandOff,
    Person,
    Role,
    User,
)
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync.importer import import_file
from sync.synthetic import write_export

KEYRING = KeyRing("test-secret-reports-0123456789abcdef0123")
AS_OF = date(2026, 11, 2)
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
IVR_CODES = ("rpc_confirmed", "rpc_promise_callback", "wrong_party", "no_input", "machine")
OPERATOR_CODES = ("promise_made", "handoff_installment", "no_answer", "wrong_number")
#: The test's own list of codes meaning 本人接触 (independent of the production patterns).
RIGHT_PARTY = frozenset(
    {"rpc_confirmed", "rpc_promise_callback", "promise_made", "handoff_installment"}
)


@dataclass(frozen=True)
class Loaded:
    campaign_id: int
    atena_numbers: list[str]


def load_campaign(database: Database, folder: Path, persons: int = 40, seed: int = 5) -> Loaded:
    """A draft campaign imported from a synthetic CP932 export (real sealing and digests)."""
    path = folder / f"export-{seed}.csv"
    write_export(path, persons=persons, seed=seed, as_of=AS_OF)
    summary = import_file(database, KEYRING, SyncSettings(), path, as_of=AS_OF)
    assert summary.campaign_id is not None
    with path.open(encoding="cp932", newline="") as stream:
        numbers = sorted({row["宛名番号"] for row in csv.DictReader(stream)})
    with database.unit_of_work() as session:
        aggregates.record_targets_loaded(session, summary.campaign_id, START)
    return Loaded(summary.campaign_id, numbers)


def make_operators(database: Database) -> list[int]:
    with database.unit_of_work() as session:
        users = [
            User(username=f"op{i}", display_name=f"オペレータ{i}", role=Role.OPERATOR,
                 password_hash="x")
            for i in (1, 2)
        ]  # fmt: skip
        session.add_all(users)
        session.flush()
        return [u.id for u in users]


def simulate_contacts(
    database: Database, campaign_id: int, operators: list[int], seed: int = 1, days: int = 3
) -> None:
    """Random finished attempts (+ hand-offs, callbacks, SMS statuses) over a few days."""
    rng = random.Random(seed)
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.status = CampaignStatus.RUNNING
        persons = list(session.scalars(select(Person).where(Person.campaign_id == campaign_id)))
        for index, person in enumerate(persons):
            when = START + timedelta(days=rng.randrange(days), minutes=index)
            attempt = random_attempt(rng, campaign_id, person.id, operators, when, index)
            session.add(attempt)
            session.flush()
            aggregates.record_attempt_result(session, attempt)
            _side_events(session, rng, attempt)


def random_attempt(
    rng: random.Random, campaign_id: int, person_id: int | None, operators: list[int],
    when: datetime, index: int,
) -> Attempt:  # fmt: skip
    channel = rng.choice([Channel.IVR, Channel.IVR, Channel.OPERATOR, Channel.SMS])
    answered = channel is not Channel.SMS and rng.random() < 0.7
    codes = OPERATOR_CODES if channel is Channel.OPERATOR else IVR_CODES
    code = rng.choice(codes) if answered else None
    promise = code in ("promise_made", "rpc_promise_callback") and rng.random() < 0.8
    return Attempt(
        campaign_id=campaign_id, person_id=person_id, channel=channel,
        status=AttemptStatus.COMPLETED, scheduled_at=when, started_at=when,
        answered_at=when if answered else None, ended_at=when + timedelta(minutes=2),
        duration_seconds=rng.randrange(10, 400) if answered else None,
        idempotency_key=f"t-{campaign_id}-{index}-{rng.random()}", outcome_code=code,
        carrier_result="completed" if answered else "no-answer",
        operator_id=rng.choice(operators) if channel is Channel.OPERATOR and operators else None,
        promise_date=(when + timedelta(days=7)).date() if promise else None,
        promise_amount_yen=rng.randrange(1000, 50000, 100) if promise else None,
    )  # fmt: skip


def _side_events(session: object, rng: random.Random, attempt: Attempt) -> None:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    if attempt.outcome_code == "handoff_installment":
        handoff = HandOff(
            campaign_id=attempt.campaign_id, person_id=attempt.person_id, attempt_id=attempt.id,
            reason="installment", created_at=attempt.scheduled_at,
        )  # fmt: skip
        session.add(handoff)
        session.flush()
        aggregates.record_handoff(session, handoff)
    if attempt.outcome_code == "rpc_promise_callback":
        callback = CallbackRequest(
            campaign_id=attempt.campaign_id, person_id=attempt.person_id, attempt_id=attempt.id,
            time_band="any", due_at=attempt.scheduled_at, created_at=attempt.scheduled_at,
        )  # fmt: skip
        session.add(callback)
        session.flush()
        aggregates.record_callback_requested(session, callback)
    if attempt.channel is Channel.SMS:
        at = attempt.scheduled_at
        aggregates.record_sms_status(session, campaign_id=attempt.campaign_id,
                                     person_id=attempt.person_id, status="sent", at=at)  # fmt: skip
        final = "delivered" if rng.random() < 0.8 else "failed"
        aggregates.record_sms_status(session, campaign_id=attempt.campaign_id,
                                     person_id=attempt.person_id, status=final, at=at)  # fmt: skip
