"""Build a :class:`~reports.model.Report` from the PII-free daily counters only.

Flow metrics (attempts, outcomes, promises, ...) are added up over the period's days; stock
metrics (targets, holdout, measured effect: see ``kernel.aggregates.SNAPSHOT_PREFIXES``) are
read as of the period's end. Nothing here reads persons, phones, receivables or attempts, so
a wiped campaign reports exactly what it reported before the wipe.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, true
from sqlalchemy.orm import Session

from kernel.aggregates import SNAPSHOT_PREFIXES, TOTAL
from kernel.errors import InvalidInput
from kernel.models import Campaign, DailyAggregate, User, utcnow
from reports.model import CampaignReport, Figures, OperatorRow, Report

Rows = Iterable[tuple[int, str, str, int]]
Metrics = dict[str, int]


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM``."""
    try:
        year, number = (int(part) for part in month.split("-"))
        first = date(year, number, 1)
    except ValueError as error:
        raise InvalidInput(f"--month: {month!r} is not YYYY-MM") from error
    return first, first.replace(day=calendar.monthrange(year, number)[1])


def _snapshot_filter() -> ColumnElement[bool]:
    return or_(*(DailyAggregate.metric.startswith(p) for p in SNAPSHOT_PREFIXES))


def _sums(session: Session, condition: ColumnElement[bool]) -> Rows:
    query = (
        select(
            DailyAggregate.campaign_id,
            DailyAggregate.dimension,
            DailyAggregate.metric,
            func.sum(DailyAggregate.value),
        )
        .where(condition)
        .group_by(DailyAggregate.campaign_id, DailyAggregate.dimension, DailyAggregate.metric)
    )
    return [(int(c), str(d), str(m), int(v or 0)) for c, d, m, v in session.execute(query)]


def _scope(campaign_ids: Sequence[int] | None) -> ColumnElement[bool]:
    if not campaign_ids:
        return true()
    return DailyAggregate.campaign_id.in_(list(campaign_ids))


def read_counters(
    session: Session, start: date, end: date, campaign_ids: Sequence[int] | None = None
) -> dict[int, dict[str, Metrics]]:
    """{campaign id: {dimension: {metric: value}}} for the period."""
    flows = and_(
        _scope(campaign_ids),
        DailyAggregate.day >= start,
        DailyAggregate.day <= end,
        not_(_snapshot_filter()),
    )
    stocks = and_(_scope(campaign_ids), DailyAggregate.day <= end, _snapshot_filter())
    found: dict[int, dict[str, Metrics]] = defaultdict(lambda: defaultdict(dict))
    for rows in (_sums(session, flows), _sums(session, stocks)):
        for campaign_id, dimension, metric, value in rows:
            found[campaign_id][dimension][metric] = value
    return found


def _operators(by_dimension: dict[str, Metrics], names: dict[int, str]) -> list[OperatorRow]:
    rows = []
    for dimension, metrics in sorted(by_dimension.items()):
        if not dimension.startswith("operator:"):
            continue
        operator_id = int(dimension.partition(":")[2])
        rows.append(
            OperatorRow(
                operator_id,
                names.get(operator_id, f"#{operator_id}"),
                metrics.get("op.calls", 0),
                metrics.get("op.talk_seconds", 0),
                metrics.get("op.results", 0),
                metrics.get("op.rpc", 0),
            )
        )
    return rows


def _campaign_report(
    campaign_id: int,
    by_dimension: dict[str, Metrics],
    campaign: Campaign | None,
    names: dict[int, str],
) -> CampaignReport:
    kinds = {
        dimension.partition(":")[2]: Figures(metrics)
        for dimension, metrics in sorted(by_dimension.items())
        if dimension.startswith("kind:")
    }
    return CampaignReport(
        campaign_id=campaign_id,
        name=campaign.name if campaign else f"催告 #{campaign_id}",
        status=campaign.status.value if campaign else "unknown",
        total=Figures(by_dimension.get(TOTAL, {})),
        kinds=kinds,
        operators=_operators(by_dimension, names),
    )


def _merge_operators(campaigns: list[CampaignReport]) -> list[OperatorRow]:
    merged: dict[int, OperatorRow] = {}
    for row in (row for c in campaigns for row in c.operators):
        seen = merged.get(row.operator_id)
        if seen is None:
            merged[row.operator_id] = row
            continue
        merged[row.operator_id] = OperatorRow(
            row.operator_id,
            row.name,
            seen.calls + row.calls,
            seen.talk_seconds + row.talk_seconds,
            seen.results + row.results,
            seen.right_party + row.right_party,
        )
    return [merged[key] for key in sorted(merged)]


def build_report(
    session: Session,
    *,
    period: str,
    start: date,
    end: date,
    campaign_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> Report:
    """The report of the period: each campaign with counters, per kind, and in total."""
    counters = read_counters(session, start, end, campaign_ids)
    ids = sorted(counters)
    campaigns = {c.id: c for c in session.scalars(select(Campaign).where(Campaign.id.in_(ids)))}
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    reports = [_campaign_report(i, counters[i], campaigns.get(i), names) for i in ids]
    total = sum((c.total for c in reports), Figures())
    kinds: dict[str, Figures] = {}
    for report in reports:
        for kind, figures in report.kinds.items():
            kinds[kind] = kinds.get(kind, Figures()) + figures
    return Report(
        period=period,
        start=start,
        end=end,
        generated_at=now or utcnow(),
        campaigns=reports,
        total=total,
        kinds=dict(sorted(kinds.items())),
        operators=_merge_operators(reports),
    )


def daily_report(session: Session, day: date, campaign_ids: Sequence[int] | None = None) -> Report:
    return build_report(session, period="daily", start=day, end=day, campaign_ids=campaign_ids)


def monthly_report(
    session: Session, month: str, campaign_ids: Sequence[int] | None = None
) -> Report:
    start, end = month_bounds(month)
    return build_report(session, period="monthly", start=start, end=end, campaign_ids=campaign_ids)


def yesterday(today: date) -> date:
    return today - timedelta(days=1)
