"""PII-free daily counters, kept up to date as contacts happen (they survive every wipe).

Callers record each event once, in the same transaction as the change it counts:

* :func:`record_attempt_result` when an attempt reaches a final status (call-session service,
  operator form, SMS sending, letters);
* :func:`record_targets_loaded` after an import loaded a campaign's targets (a snapshot:
  calling it again replaces the campaign's target counts);
* :func:`record_handoff` when a hand-off is created, :func:`record_callback_requested` when a
  callback request is created, :func:`record_sms_status` on each SMS status callback,
  :func:`record_letters_printed` for a print run (the letters module calls it).

Every counter is written for the dimension ``total`` and once for each receivable kind the
person owes (``kind:<債権種別>``), so per-kind figures do not add up to the total when a person
owes several kinds. Operator productivity uses ``operator:<user id>``. Reports read only
:class:`~kernel.models.DailyAggregate` rows, so a wiped campaign's reports still work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from fnmatch import fnmatch
from typing import Protocol

from sqlalchemy import Date, bindparam, delete, func, select, text
from sqlalchemy.orm import Session

from kernel.calendar import TOKYO
from kernel.models import (
    CallbackRequest,
    Channel,
    DailyAggregate,
    HandOff,
    Person,
    Phone,
    PhoneStatus,
    Receivable,
)

TOTAL = "total"


class FinishedAttempt(Protocol):
    """What counting a finished attempt reads: an :class:`~kernel.models.Attempt`, or the
    call session's plain copy of one."""

    @property
    def campaign_id(self) -> int: ...
    @property
    def person_id(self) -> int | None: ...
    @property
    def channel(self) -> Channel: ...
    @property
    def scheduled_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def answered_at(self) -> datetime | None: ...
    @property
    def duration_seconds(self) -> int | None: ...
    @property
    def outcome_code(self) -> str | None: ...
    @property
    def carrier_result(self) -> str | None: ...
    @property
    def refusal_reason(self) -> str | None: ...
    @property
    def identity_confirmed_at(self) -> datetime | None: ...
    @property
    def promise_date(self) -> date | None: ...
    @property
    def promise_amount_yen(self) -> int | None: ...
    @property
    def operator_id(self) -> int | None: ...


Key = tuple[str, str]  # (dimension, metric)

#: Outcome codes (IVR and operator, fnmatch patterns) that mean the right party was reached.
RPC_PATTERNS: tuple[str, ...] = (
    "rpc_*",
    "paid_claimed",
    "transferred",
    "promise*",
    "handoff*",
    "hand_off*",
    "consult*",
    "installment*",
    "slip_*",
    "reissue*",
    "already_paid*",
)
#: Metrics that describe a campaign's stock (targets, holdout, measured effect), not a flow:
#: reports read them as of the period's end instead of adding up the period's days.
SNAPSHOT_PREFIXES: tuple[str, ...] = ("targets", "holdout.", "effect.")


def is_right_party(outcome_code: str | None) -> bool:
    """Whether an outcome code says the resident themself was reached (本人接触)."""
    return bool(outcome_code) and any(fnmatch(outcome_code or "", p) for p in RPC_PATTERNS)


def is_snapshot_metric(metric: str) -> bool:
    return metric.startswith(SNAPSHOT_PREFIXES)


def local_day(instant: datetime) -> date:
    """The Asia/Tokyo calendar day an instant belongs to (reports are per local day)."""
    return instant.astimezone(TOKYO).date()


def add_counts(session: Session, *, day: date, campaign_id: int, counts: Mapping[Key, int]) -> None:
    """Add many counters at once with one atomic upsert per counter (safe under concurrent
    writers), sent as one executemany of :data:`_UPSERT`."""
    _upsert_rows(session, _rows(day, campaign_id, counts))


def _rows(day: date, campaign_id: int, counts: Mapping[Key, int]) -> list[dict[str, object]]:
    return [
        {"day": day, "campaign_id": campaign_id, "dimension": dim, "metric": metric, "value": n}
        for (dim, metric), n in counts.items()
        if n
    ]


def _upsert_rows(session: Session, rows: list[dict[str, object]]) -> None:
    if rows:
        session.connection().execute(_UPSERT, rows)


class CounterBatch:
    """Counters added up in memory, then written together (:meth:`write`): for a unit of work
    that counts many events, such as the call session's group commit, where the finished calls
    of one batch mostly share their counters. Write it in the unit of work it counts."""

    def __init__(self) -> None:
        self._counts: dict[tuple[date, int], Counter[Key]] = {}

    def add(self, *, day: date, campaign_id: int, counts: Mapping[Key, int]) -> None:
        self._counts.setdefault((day, campaign_id), Counter()).update(counts)

    def write(self, session: Session) -> None:
        rows = [
            row
            for (day, campaign_id), counts in self._counts.items()
            for row in _rows(day, campaign_id, counts)
        ]
        self._counts.clear()
        _upsert_rows(session, rows)


#: The counters' upsert, in the ``ON CONFLICT`` syntax SQLite and PostgreSQL share. Written as
#: text because SQLAlchemy cannot cache the dialects' ``on_conflict_do_update`` constructs: they
#: were compiled anew on every call, about a third of the cost of counting a finished call.
_UPSERT = text(
    "INSERT INTO daily_aggregates (day, campaign_id, dimension, metric, value) "
    "VALUES (:day, :campaign_id, :dimension, :metric, :value) "
    "ON CONFLICT (day, campaign_id, dimension, metric) "
    "DO UPDATE SET value = daily_aggregates.value + excluded.value"
).bindparams(bindparam("day", type_=Date))


def bump(
    session: Session,
    *,
    day: date,
    campaign_id: int,
    metric: str,
    dimension: str = TOTAL,
    by: int = 1,
) -> None:
    """Add ``by`` to one counter (created at zero when missing)."""
    add_counts(session, day=day, campaign_id=campaign_id, counts={(dimension, metric): by})


def replace_snapshot(
    session: Session, *, day: date, campaign_id: int, prefix: str, counts: Mapping[Key, int]
) -> None:
    """Replace every counter of the campaign whose metric starts with ``prefix``."""
    session.execute(
        delete(DailyAggregate).where(
            DailyAggregate.campaign_id == campaign_id,
            DailyAggregate.metric.startswith(prefix, autoescape=True),
        )
    )
    add_counts(session, day=day, campaign_id=campaign_id, counts=counts)


def person_kinds(session: Session, person_id: int | None) -> list[str]:
    """The receivable kinds (債権種別) a person owes: codes, not personal values."""
    if person_id is None:
        return []
    query = select(Receivable.kind).where(Receivable.person_id == person_id).distinct()
    return sorted(session.scalars(query))


def _spread(metrics: Counter[str], kinds: Iterable[str]) -> Counter[Key]:
    """The same metrics for the total and for each receivable kind."""
    counts: Counter[Key] = Counter()
    for dimension in (TOTAL, *(f"kind:{kind}" for kind in kinds)):
        for metric, value in metrics.items():
            counts[(dimension, metric)] += value
    return counts


def attempt_metrics(attempt: FinishedAttempt) -> Counter[str]:
    """What one finished attempt adds to the counters (pure: read from the attempt only)."""
    channel = attempt.channel.value
    metrics: Counter[str] = Counter({f"attempts.{channel}": 1})
    if attempt.outcome_code:
        metrics[f"outcome.{channel}.{attempt.outcome_code}"] += 1
    if attempt.carrier_result:
        metrics[f"carrier_result.{channel}.{attempt.carrier_result}"] += 1
    if attempt.refusal_reason:
        metrics[f"refused.{attempt.refusal_reason}"] += 1
    if attempt.answered_at is not None:
        metrics[f"answered.{channel}"] += 1
        metrics[f"talk_seconds.{channel}"] += max(attempt.duration_seconds or 0, 0)
    if is_right_party(attempt.outcome_code):
        metrics[f"rpc.{channel}"] += 1
    if attempt.identity_confirmed_at is not None or (attempt.outcome_code or "").startswith("rpc_"):
        metrics[f"identity_confirmed.{channel}"] += 1
    if attempt.promise_date is not None or attempt.promise_amount_yen is not None:
        metrics["promises"] += 1
        metrics["promise_yen"] += max(attempt.promise_amount_yen or 0, 0)
    return metrics


def operator_metrics(attempt: FinishedAttempt) -> Counter[Key]:
    """Productivity counters of the operator who made the attempt (none for automated ones)."""
    if attempt.operator_id is None:
        return Counter()
    dimension = f"operator:{attempt.operator_id}"
    counts: Counter[Key] = Counter({(dimension, "op.calls"): 1})
    if attempt.answered_at is not None:
        counts[(dimension, "op.talk_seconds")] += max(attempt.duration_seconds or 0, 0)
    if attempt.outcome_code:
        counts[(dimension, "op.results")] += 1
    if is_right_party(attempt.outcome_code):
        counts[(dimension, "op.rpc")] += 1
    return counts


def record_attempt_result(
    session: Session,
    attempt: FinishedAttempt,
    kinds: Iterable[str] | None = None,
    batch: CounterBatch | None = None,
) -> None:
    """Count one finished attempt: by channel, outcome code, carrier result, answer, 本人接触,
    identity confirmation, promise (count and amount), talk time, and operator productivity.
    ``kinds``: the person's receivable kinds when the caller has them at hand (else read);
    ``batch``: add the counts to it instead of writing them now."""
    instant = attempt.ended_at or attempt.scheduled_at
    if kinds is None:
        kinds = person_kinds(session, attempt.person_id)
    counts = _spread(attempt_metrics(attempt), sorted(set(kinds)))
    counts.update(operator_metrics(attempt))
    day = local_day(instant)
    if batch is None:
        add_counts(session, day=day, campaign_id=attempt.campaign_id, counts=counts)
    else:
        batch.add(day=day, campaign_id=attempt.campaign_id, counts=counts)


def record_handoff(session: Session, handoff: HandOff) -> None:
    """Count a hand-off to staff (R-8) when it is created."""
    metrics = Counter({"handoffs": 1, f"handoff_reason.{handoff.reason}": 1})
    counts = _spread(metrics, person_kinds(session, handoff.person_id))
    add_counts(
        session, day=local_day(handoff.created_at), campaign_id=handoff.campaign_id, counts=counts
    )


def record_callback_requested(session: Session, callback: CallbackRequest) -> None:
    """Count a callback request when it is created."""
    counts = _spread(Counter({"callbacks": 1}), person_kinds(session, callback.person_id))
    add_counts(
        session, day=local_day(callback.created_at), campaign_id=callback.campaign_id, counts=counts
    )


def record_sms_status(
    session: Session,
    *,
    campaign_id: int,
    person_id: int | None,
    status: str,
    at: datetime,
) -> None:
    """Count an SMS status: ``sent`` when the carrier accepted it, then ``delivered`` or
    ``failed``/``undelivered`` from the status callback (call once per status and message)."""
    counts = _spread(Counter({f"sms.{status}": 1}), person_kinds(session, person_id))
    add_counts(session, day=local_day(at), campaign_id=campaign_id, counts=counts)


def record_letters_printed(
    session: Session, *, campaign_id: int, at: datetime, kinds: Mapping[str, int], letters: int
) -> None:
    """Count a print run of 催告書: ``letters`` in total, ``kinds`` letters per receivable kind."""
    counts: Counter[Key] = Counter({(TOTAL, "letters_printed"): letters})
    for kind, n in kinds.items():
        counts[(f"kind:{kind}", "letters_printed")] += n
    add_counts(session, day=local_day(at), campaign_id=campaign_id, counts=counts)


def _target_counts(session: Session, campaign_id: int) -> Counter[Key]:
    persons = select(func.count()).where(Person.campaign_id == campaign_id)
    with_phone = select(func.count(func.distinct(Phone.person_id))).where(
        Phone.campaign_id == campaign_id, Phone.status == PhoneStatus.USABLE
    )
    counts: Counter[Key] = Counter()
    counts[(TOTAL, "targets")] = int(session.scalar(persons) or 0)
    counts[(TOTAL, "targets.phone_known")] = int(session.scalar(with_phone) or 0)
    by_kind = (
        select(Receivable.kind, func.count(func.distinct(Receivable.person_id)))
        .where(Receivable.campaign_id == campaign_id)
        .group_by(Receivable.kind)
    )
    for kind, n in session.execute(by_kind):
        counts[(f"kind:{kind}", "targets")] = int(n)
    phoned_kind = (
        select(Receivable.kind, func.count(func.distinct(Receivable.person_id)))
        .join(Phone, Phone.person_id == Receivable.person_id)
        .where(Receivable.campaign_id == campaign_id, Phone.status == PhoneStatus.USABLE)
        .group_by(Receivable.kind)
    )
    for kind, n in session.execute(phoned_kind):
        counts[(f"kind:{kind}", "targets.phone_known")] = int(n)
    return counts


def record_targets_loaded(session: Session, campaign_id: int, at: datetime) -> None:
    """Snapshot the campaign's targets (total, with a usable phone; per kind). Idempotent:
    call after every import into the campaign; a campaign without persons (wiped) keeps the
    snapshot it had."""
    counts = _target_counts(session, campaign_id)
    if not counts[(TOTAL, "targets")]:
        return  # nothing loaded, or already wiped: keep the snapshot taken before the wipe
    replace_snapshot(
        session, day=local_day(at), campaign_id=campaign_id, prefix="targets", counts=counts
    )
