"""Report figures reconcile exactly with the attempts they count (property test, both DBs)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kernel import aggregates
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Campaign, Channel, Person, Receivable, Role, User
from reports.build import build_report, daily_report
from tests.integration.test_reports_support import IVR_CODES, OPERATOR_CODES, RIGHT_PARTY

KINDS = ("市県民税", "固定資産税", "軽自動車税")
BASE = datetime(2026, 10, 30, 15, 30, tzinfo=UTC)  # 00:30 on 10/31 in Tokyo

attempt_spec = st.fixed_dictionaries(
    {
        "person": st.integers(0, 4),
        "channel": st.sampled_from([Channel.IVR, Channel.OPERATOR, Channel.SMS, Channel.LETTER]),
        "code": st.sampled_from((None, *IVR_CODES, *OPERATOR_CODES)),
        "answered": st.booleans(),
        "seconds": st.integers(0, 900),
        "promise": st.one_of(st.none(), st.integers(0, 90_000)),
        "operator": st.sampled_from([None, 0, 1]),
        "hours": st.integers(0, 24 * 5),
    }
)
person_kinds = st.lists(
    st.sets(st.sampled_from(KINDS), min_size=1, max_size=2), min_size=5, max_size=5
)


def _setup(session: object, kinds: list[set[str]]) -> tuple[int, list[int], list[int]]:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    campaign = Campaign(name="検証", created_by="test")
    session.add(campaign)
    session.flush()
    users = list(session.scalars(select(User.id).order_by(User.id)))
    if not users:
        session.add_all(User(username=f"u{i}", display_name=f"職員{i}", role=Role.OPERATOR,
                             password_hash="x") for i in range(2))  # fmt: skip
        session.flush()
        users = list(session.scalars(select(User.id).order_by(User.id)))
    persons = []
    for index, owed in enumerate(kinds):
        person = Person(campaign_id=campaign.id, ref_digest=f"d{index}", sealed_pii=b"-",
                        channel=Channel.IVR)  # fmt: skip
        session.add(person)
        session.flush()
        for kind in owed:
            session.add(Receivable(person_id=person.id, campaign_id=campaign.id, department="課",
                                   kind=kind, fiscal_year=2026, period="1",
                                   due_date=date(2026, 6, 30), unpaid_yen=1000))  # fmt: skip
        persons.append(person.id)
    session.flush()
    return campaign.id, persons, users


def _attempt(
    spec: dict[str, object], campaign_id: int, persons: list[int], users: list[int], n: int
) -> Attempt:
    when = BASE + timedelta(hours=int(spec["hours"]))  # type: ignore[call-overload]
    promise = spec["promise"]
    operator = spec["operator"]
    return Attempt(
        campaign_id=campaign_id, person_id=persons[int(spec["person"])],  # type: ignore[call-overload]
        channel=spec["channel"], status=AttemptStatus.COMPLETED, scheduled_at=when, ended_at=when,
        answered_at=when if spec["answered"] else None, duration_seconds=spec["seconds"],
        outcome_code=spec["code"], idempotency_key=f"p-{campaign_id}-{n}",
        promise_amount_yen=promise, promise_date=when.date() if promise is not None else None,
        operator_id=None if operator is None else users[int(operator)],  # type: ignore[call-overload]
    )  # fmt: skip


def _expected(
    attempts: list[Attempt], kinds_of: dict[int, set[str]], kind: str | None
) -> Counter[str]:
    counts: Counter[str] = Counter()
    for a in attempts:
        if kind is not None and kind not in kinds_of[a.person_id or 0]:
            continue
        call = a.channel in (Channel.IVR, Channel.OPERATOR)
        counts[f"attempts.{a.channel.value}"] += 1
        counts["answered"] += call and a.answered_at is not None
        counts["talk"] += (a.duration_seconds or 0) if call and a.answered_at else 0
        counts["rpc"] += call and a.outcome_code in RIGHT_PARTY
        counts["promises"] += a.promise_amount_yen is not None
        counts["promise_yen"] += a.promise_amount_yen or 0
        if a.outcome_code:
            counts[f"outcome.{a.channel.value}.{a.outcome_code}"] += 1
    return +counts


def _observed(figures: object) -> Counter[str]:
    from reports.model import Figures

    assert isinstance(figures, Figures)
    counts: Counter[str] = Counter()
    for channel, n in figures.attempts_by_channel.items():
        counts[f"attempts.{channel}"] = n
    counts.update(answered=figures.answered, talk=figures.talk_seconds, rpc=figures.right_party,
                  promises=figures.promises, promise_yen=figures.promise_yen)  # fmt: skip
    counts.update({f"outcome.{code}": n for code, n in figures.outcomes.items()})
    return +counts


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(specs=st.lists(attempt_spec, max_size=25), kinds=person_kinds)
def test_report_totals_equal_direct_counts(
    database: Database, specs: list[dict[str, object]], kinds: list[set[str]]
) -> None:
    with database.unit_of_work() as session:
        campaign_id, persons, users = _setup(session, kinds)
        attempts = [_attempt(s, campaign_id, persons, users, n) for n, s in enumerate(specs)]
        session.add_all(attempts)
        session.flush()
        for attempt in attempts:
            aggregates.record_attempt_result(session, attempt)
    kinds_of = dict(zip(persons, kinds, strict=True))
    start, end = date(2026, 10, 31), date(2026, 11, 6)
    with database.read_only() as session:
        report = build_report(
            session, period="monthly", start=start, end=end, campaign_ids=[campaign_id]
        )
        assert _observed(report.total) == _expected(attempts, kinds_of, None)
        for kind in KINDS:
            observed = report.kinds.get(kind)
            expected = _expected(attempts, kinds_of, kind)
            assert (_observed(observed) if observed else Counter()) == expected
        by_operator = Counter(a.operator_id for a in attempts if a.operator_id is not None)
        assert {row.operator_id: row.calls for row in report.operators} == dict(by_operator)
        days = [daily_report(session, start + timedelta(days=d), [campaign_id]) for d in range(7)]
    assert sum(d.total.attempts for d in days) == len(attempts)
    per_day = Counter(aggregates.local_day(a.ended_at or BASE) for a in attempts)
    assert {d.start: d.total.attempts for d in days if d.total.attempts} == dict(per_day)
