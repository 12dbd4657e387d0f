"""The calling window (R-1, R-2): the hard limit, holidays, closures, next_open.

The property tests compare :mod:`kernel.calendar` with an independent oracle written here
straight from the rules (holidays come from the ``holidays`` package, not from the module).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernel.calendar as cal
from kernel.calendar import (
    HARD_EARLIEST,
    HARD_LATEST,
    TOKYO,
    CallingPolicy,
    CallingWindow,
    ClosedReason,
    DailyHours,
    parse_hours,
)

FIRST_YEAR, LAST_YEAR = 2025, 2028
# Oracle tables reach one year past the instants drawn: a 21-day search from late December
# crosses into the next year.
ORACLE_YEARS = range(FIRST_YEAR - 1, LAST_YEAR + 3)
JP_HOLIDAYS = frozenset(holidays.country_holidays("JP", years=ORACLE_YEARS))
YEAR_END_DAYS = frozenset(
    date(year, month, day)
    for year in ORACLE_YEARS
    for month, day in ((12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3))
)
ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT = CallingWindow(CallingPolicy.default())
GREEDY = CallingWindow(
    CallingPolicy.from_config({d: ["00:00-24:00"] for d in ALL_DAYS}, year_end_closure=False)
)
GREEDY_NO_HOLIDAYS = CallingWindow(
    CallingPolicy.from_config(
        {d: ["00:00-24:00"] for d in ALL_DAYS},
        year_end_closure=False,
        observe_national_holidays=False,
    )
)


def tokyo(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=TOKYO)


# --- the oracle: the rules restated, independently of kernel.calendar --------------------


def oracle_day_reason(policy: CallingPolicy, day: date) -> ClosedReason | None:
    if policy.observe_national_holidays and day in JP_HOLIDAYS:
        return ClosedReason.NATIONAL_HOLIDAY
    if (policy.year_end_closure and day in YEAR_END_DAYS) or day in policy.closure_dates:
        return ClosedReason.CLOSURE_DAY
    return None


def oracle_reason(policy: CallingPolicy, instant: datetime) -> ClosedReason | None:
    local = instant.astimezone(TOKYO)
    clock = local.time()
    if not time(8) <= clock < time(21):
        return ClosedReason.HARD_LIMIT
    day_reason = oracle_day_reason(policy, local.date())
    if day_reason is not None:
        return day_reason
    spans = policy.weekly_hours.get(local.weekday(), ())
    if any(span.start <= clock < span.end for span in spans):
        return None
    return ClosedReason.OUTSIDE_HOURS


def oracle_next_open(policy: CallingPolicy, after: datetime, days: int) -> datetime | None:
    """The open set is a union of [a, b) spans, so its first point >= after is `after` or an a."""
    local = after.astimezone(TOKYO)
    candidates = [local]
    for offset in range(days + 1):
        day = local.date() + timedelta(days=offset)
        for span in policy.weekly_hours.get(day.weekday(), ()):
            candidates.append(datetime.combine(day, max(span.start, time(8)), TOKYO))
    found = [c for c in candidates if c >= local and oracle_reason(policy, c) is None]
    return min(found, default=None)


def assert_legal(policy: CallingPolicy, instant: datetime) -> None:
    local = instant.astimezone(TOKYO)
    assert HARD_EARLIEST <= local.time() < HARD_LATEST, local
    assert not (policy.observe_national_holidays and local.date() in JP_HOLIDAYS), local
    assert not (policy.year_end_closure and local.date() in YEAR_END_DAYS), local
    assert local.date() not in policy.closure_dates, local
    spans = policy.weekly_hours.get(local.weekday(), ())
    assert any(span.start <= local.time() < span.end for span in spans), local


# --- strategies ------------------------------------------------------------------------

minute_clock = st.builds(time, st.integers(0, 23), st.integers(0, 59))
GREEDY_SPANS = [
    DailyHours(time(0), time(23, 59)),
    DailyHours(time(0), time.max),
    DailyHours(time(7), time(23)),
    DailyHours(time(20, 30), time(23, 59)),
    DailyHours(time(0), time(8, 30)),
]
spans = st.one_of(
    st.sampled_from(GREEDY_SPANS),
    st.tuples(minute_clock, minute_clock)
    .filter(lambda pair: pair[0] < pair[1])
    .map(lambda pair: DailyHours(*pair)),
)
special_days = sorted(
    day for day in JP_HOLIDAYS | YEAR_END_DAYS if FIRST_YEAR <= day.year <= LAST_YEAR
)
days = st.one_of(
    st.dates(date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)), st.sampled_from(special_days)
)
policies = st.builds(
    CallingPolicy,
    weekly_hours=st.dictionaries(st.integers(0, 6), st.lists(spans, max_size=3).map(tuple)),
    closure_dates=st.frozensets(days, max_size=15),
    year_end_closure=st.booleans(),
    observe_national_holidays=st.booleans(),
)
zones: st.SearchStrategy[tzinfo] = st.sampled_from(
    [
        UTC,
        TOKYO,
        ZoneInfo("America/New_York"),
        ZoneInfo("Europe/London"),
        timezone(timedelta(hours=-10)),
        timezone(timedelta(hours=5, minutes=30)),
    ]
)
edge_clocks = st.sampled_from(
    [time(0), time(7, 59, 59, 999999), time(8), time(9), time(20), time(20, 59, 59), time(21)]
)


@st.composite
def policy_and_instants(draw: st.DrawFn) -> tuple[CallingPolicy, list[datetime]]:
    """A policy plus instants biased towards holidays, closures and the 08:00/21:00 edges."""
    policy = draw(policies)
    pool = sorted(policy.closure_dates) + special_days
    instants = []
    for _ in range(draw(st.integers(1, 6))):
        zone = draw(zones)
        if draw(st.booleans()):
            naive = draw(st.datetimes(datetime(FIRST_YEAR, 1, 1), datetime(LAST_YEAR, 12, 31)))
            instants.append(naive.replace(tzinfo=UTC).astimezone(zone))
            continue
        day = draw(st.one_of(days, st.sampled_from(pool)))
        clock = draw(st.one_of(edge_clocks, st.times()))
        for hours in policy.weekly_hours.get(day.weekday(), ()):
            clock = draw(st.sampled_from([clock, hours.start, hours.end]))
        instants.append(datetime.combine(day, clock, TOKYO).astimezone(zone))
    return policy, instants


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Case = tuple[CallingPolicy, list[datetime]]


# --- property tests --------------------------------------------------------------------


@FAST
@given(case=policy_and_instants())
def test_is_open_agrees_with_the_rules(case: Case) -> None:
    policy, instants = case
    window = CallingWindow(policy)
    for instant in instants:
        reason = window.closed_reason(instant)
        assert reason == oracle_reason(policy, instant), instant
        assert window.is_open(instant) == (reason is None)
        if window.is_open(instant):
            assert_legal(policy, instant)


def check_next_open(window: CallingWindow, instant: datetime) -> None:
    policy = window.policy
    found = window.next_open(instant, horizon_days=21)
    assert found == oracle_next_open(policy, instant, 21), instant
    if found is None:
        return
    assert found >= instant
    assert found.tzinfo is TOKYO
    assert window.is_open(found)
    assert_legal(policy, found)
    # Sampled check that nothing in [instant, found) is open: every interval start in
    # between, plus a bounded sweep in 7-minute steps.
    first = instant.astimezone(TOKYO).date()
    for offset in range((found.date() - first).days + 1):
        for start, _ in window.open_intervals(first + timedelta(days=offset)):
            assert not instant <= start < found
    probe, steps = instant, 0
    while probe < found and steps < 200:
        assert not window.is_open(probe), probe
        probe += timedelta(minutes=7)
        steps += 1


@FAST
@given(case=policy_and_instants())
def test_next_open_is_the_first_open_instant(case: Case) -> None:
    policy, instants = case
    window = CallingWindow(policy)
    for instant in instants:
        check_next_open(window, instant)


@FAST
@given(case=policy_and_instants())
def test_remaining_today_ends_where_the_window_closes(case: Case) -> None:
    policy, instants = case
    window = CallingWindow(policy)
    for instant in instants:
        left = window.remaining_today(instant)
        assert (left > timedelta(0)) == window.is_open(instant)
        if left:
            assert window.is_open(instant + left - timedelta(microseconds=1))
            assert not window.is_open(instant + left)
            assert (instant + left).astimezone(TOKYO).time() <= HARD_LATEST


@FAST
@given(policy=policies, day=days)
def test_open_intervals_are_clipped_sorted_and_disjoint(policy: CallingPolicy, day: date) -> None:
    intervals = CallingWindow(policy).open_intervals(day)
    if oracle_day_reason(policy, day) is not None:
        assert intervals == []
    for start, end in intervals:
        assert start.tzinfo is TOKYO and end.tzinfo is TOKYO
        assert start.date() == day == end.date()
        assert HARD_EARLIEST <= start.time() < end.time() <= HARD_LATEST
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end < start


# --- the hard limit ------------------------------------------------------------------


def test_hard_limit_boundaries_under_a_policy_asking_for_7_to_23() -> None:
    window = CallingWindow(CallingPolicy.from_config({"tue": ["07:00-23:00"]}))
    assert window.closed_reason(tokyo(2026, 11, 24, 7, 59, 59)) is ClosedReason.HARD_LIMIT
    assert window.is_open(tokyo(2026, 11, 24, 8, 0))
    assert window.is_open(tokyo(2026, 11, 24, 20, 59, 59))
    assert window.closed_reason(tokyo(2026, 11, 24, 21, 0)) is ClosedReason.HARD_LIMIT
    assert window.closed_reason(tokyo(2026, 11, 24, 22, 30)) is ClosedReason.HARD_LIMIT
    assert window.open_intervals(date(2026, 11, 24)) == [
        (tokyo(2026, 11, 24, 8), tokyo(2026, 11, 24, 21))
    ]
    assert window.remaining_today(tokyo(2026, 11, 24, 20, 0)) == timedelta(hours=1)
    assert window.next_open(tokyo(2026, 11, 24, 21, 0)) == tokyo(2026, 12, 1, 8)


def test_round_the_clock_configuration_is_open_exactly_from_8_to_21() -> None:
    day = date(2026, 11, 24)  # an ordinary Tuesday
    for minute in range(24 * 60):
        instant = datetime.combine(day, time(minute // 60, minute % 60), TOKYO)
        assert GREEDY.is_open(instant) == (8 * 60 <= minute < 21 * 60), instant


# --- national holidays and closures -----------------------------------------------------


def test_new_years_day_is_closed_as_holiday_and_as_year_end() -> None:
    new_year = tokyo(2026, 1, 1, 10)  # Thursday
    assert date(2026, 1, 1) in JP_HOLIDAYS
    assert DEFAULT.closed_reason(new_year) is ClosedReason.NATIONAL_HOLIDAY
    no_holidays = CallingPolicy.from_config(
        {"thu": ["09:00-20:00"]}, observe_national_holidays=False
    )
    assert CallingWindow(no_holidays).closed_reason(new_year) is ClosedReason.CLOSURE_DAY
    no_year_end = CallingPolicy.from_config({"thu": ["09:00-20:00"]}, year_end_closure=False)
    assert CallingWindow(no_year_end).closed_reason(new_year) is ClosedReason.NATIONAL_HOLIDAY
    neither = CallingPolicy.from_config(
        {"thu": ["09:00-20:00"]}, year_end_closure=False, observe_national_holidays=False
    )
    assert CallingWindow(neither).is_open(new_year)


def test_december_29_is_a_closure_day_not_a_holiday() -> None:
    day = date(2026, 12, 29)
    assert day.weekday() == 1 and day not in JP_HOLIDAYS
    assert DEFAULT.closed_reason(tokyo(2026, 12, 29, 10)) is ClosedReason.CLOSURE_DAY
    assert DEFAULT.open_intervals(day) == []
    switched_off = CallingWindow(
        CallingPolicy(CallingPolicy.default().weekly_hours, year_end_closure=False)
    )
    assert switched_off.is_open(tokyo(2026, 12, 29, 10))
    assert not switched_off.is_open(tokyo(2027, 1, 1, 10))  # 元日 stays a national holiday


@pytest.mark.parametrize(
    "day",
    [
        date(2025, 2, 24),  # 振替休日 for 天皇誕生日 (Sun 2/23)
        date(2025, 11, 24),  # 振替休日 for 勤労感謝の日 (Sun 11/23)
        date(2026, 5, 6),  # 振替休日 for 憲法記念日 (Sun 5/3)
        date(2027, 3, 22),  # 振替休日 for 春分の日 (Sun 3/21)
        date(2026, 9, 22),  # 国民の休日, sandwiched between two holidays
    ],
)
def test_substitute_and_sandwiched_holidays_are_closed(day: date) -> None:
    assert day in JP_HOLIDAYS and day.weekday() < 5
    instant = datetime.combine(day, time(10), TOKYO)
    assert DEFAULT.closed_reason(instant) is ClosedReason.NATIONAL_HOLIDAY
    assert GREEDY.closed_reason(instant) is ClosedReason.NATIONAL_HOLIDAY
    assert GREEDY_NO_HOLIDAYS.is_open(instant)


def test_municipal_closure_dates() -> None:
    window = CallingWindow(
        CallingPolicy.from_config({"wed": ["09:00-17:00"]}, [date(2026, 11, 25)])
    )
    assert window.closed_reason(tokyo(2026, 11, 25, 10)) is ClosedReason.CLOSURE_DAY
    assert window.next_open(tokyo(2026, 11, 25, 10)) == tokyo(2026, 12, 2, 9)


def test_holiday_lookups_are_cached_per_year(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = holidays.country_holidays

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("years"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    cal._national_holidays.cache_clear()
    monkeypatch.setattr(holidays, "country_holidays", counting)
    for hour in range(8, 21):
        DEFAULT.is_open(tokyo(2026, 5, 6, hour))
    DEFAULT.next_open(tokyo(2026, 12, 28, 20))
    assert sorted(calls) == [2026, 2027]  # type: ignore[type-var]


# --- time zones ------------------------------------------------------------------------


def test_utc_input_is_converted_to_tokyo() -> None:
    assert DEFAULT.is_open(datetime(2026, 11, 24, 0, 0, tzinfo=UTC))  # 09:00 JST Tuesday
    assert not DEFAULT.is_open(datetime(2026, 11, 23, 23, 59, tzinfo=UTC))  # 08:59 JST
    assert GREEDY.is_open(datetime(2026, 11, 24, 11, 59, 59, tzinfo=UTC))  # 20:59:59 JST
    late = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 21:00 JST
    assert GREEDY.closed_reason(late) is ClosedReason.HARD_LIMIT
    # 2026-11-23 20:00 UTC is Tuesday 05:00 in Tokyo, but still Monday (a holiday) in UTC.
    assert GREEDY.closed_reason(datetime(2026, 11, 23, 20, tzinfo=UTC)) is ClosedReason.HARD_LIMIT
    start = datetime(2026, 11, 24, 1, 15, tzinfo=UTC)
    found = DEFAULT.next_open(start)
    assert found == start and found is not None and found.tzinfo is TOKYO
    assert found.hour == 10 and found.minute == 15


def test_dst_elsewhere_is_irrelevant() -> None:
    new_york = ZoneInfo("America/New_York")
    window = CallingWindow(
        CallingPolicy.from_config({"sun": ["09:00-15:00"]}, observe_national_holidays=False)
    )
    # 01:30 happens twice in New York on 2026-11-01: EDT (14:30 JST) then EST (15:30 JST).
    first = datetime(2026, 11, 1, 1, 30, tzinfo=new_york, fold=0)
    second = datetime(2026, 11, 1, 1, 30, tzinfo=new_york, fold=1)
    assert window.is_open(first)
    assert window.closed_reason(second) is ClosedReason.OUTSIDE_HOURS
    assert window.remaining_today(first) == timedelta(minutes=30)
    assert window.next_open(second) == tokyo(2026, 11, 8, 9)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 11, 24, 10)
    for call in (
        DEFAULT.is_open,
        DEFAULT.closed_reason,
        DEFAULT.next_open,
        DEFAULT.remaining_today,
    ):
        with pytest.raises(ValueError, match="aware"):
            call(naive)


# --- next_open and friends ---------------------------------------------------------------


def test_next_open_under_the_default_policy() -> None:
    assert date(2026, 11, 27).weekday() == 4
    assert DEFAULT.next_open(tokyo(2026, 11, 27, 20, 30)) == tokyo(2026, 11, 28, 9)  # Fri->Sat
    assert DEFAULT.next_open(tokyo(2026, 11, 28, 20, 30)) == tokyo(2026, 11, 30, 9)  # Sat->Mon
    assert DEFAULT.next_open(tokyo(2026, 11, 24, 10, 15)) == tokyo(2026, 11, 24, 10, 15)
    assert DEFAULT.next_open(tokyo(2026, 11, 24, 3, 0)) == tokyo(2026, 11, 24, 9)
    assert DEFAULT.next_open(tokyo(2026, 11, 24, 20, 0)) == tokyo(2026, 11, 25, 9)  # end excluded


def test_next_open_crosses_the_year_end_closure() -> None:
    # Tue 12/29 .. Sun 1/3 closed; 2027-01-04 is a Monday and not a national holiday.
    assert date(2027, 1, 4).weekday() == 0 and date(2027, 1, 4) not in JP_HOLIDAYS
    assert DEFAULT.next_open(tokyo(2026, 12, 28, 20, 0)) == tokyo(2027, 1, 4, 9)
    # 2026-01-04 is a Sunday, so the previous year-end closure ends on Monday 1/5.
    assert date(2026, 1, 4).weekday() == 6
    assert DEFAULT.next_open(tokyo(2025, 12, 27, 20, 30)) == tokyo(2026, 1, 5, 9)


def test_next_open_crosses_golden_week() -> None:
    # Sat 5/2, then Sun 5/3 and 5/4, 5/5, 5/6 (振替休日) are holidays: Thursday 5/7.
    assert DEFAULT.next_open(tokyo(2026, 5, 2, 20, 0)) == tokyo(2026, 5, 7, 9)


def test_next_open_horizon() -> None:
    closed = CallingWindow(CallingPolicy({}))
    assert closed.next_open(tokyo(2026, 11, 24, 10), horizon_days=10) is None
    assert DEFAULT.next_open(tokyo(2026, 12, 28, 20), horizon_days=6) is None
    assert DEFAULT.next_open(tokyo(2026, 12, 28, 20), horizon_days=7) == tokyo(2027, 1, 4, 9)
    with pytest.raises(ValueError, match="horizon_days"):
        DEFAULT.next_open(tokyo(2026, 11, 24, 10), horizon_days=-1)


def test_split_and_adjacent_hours() -> None:
    lunch = CallingWindow(CallingPolicy.from_config({"TUE": ["13:00-20:00", "09:00-12:00"]}))
    assert lunch.open_intervals(date(2026, 11, 24)) == [
        (tokyo(2026, 11, 24, 9), tokyo(2026, 11, 24, 12)),
        (tokyo(2026, 11, 24, 13), tokyo(2026, 11, 24, 20)),
    ]
    assert lunch.closed_reason(tokyo(2026, 11, 24, 12, 30)) is ClosedReason.OUTSIDE_HOURS
    assert lunch.next_open(tokyo(2026, 11, 24, 12, 0)) == tokyo(2026, 11, 24, 13)
    assert lunch.remaining_today(tokyo(2026, 11, 24, 11)) == timedelta(hours=1)
    adjacent = CallingWindow(CallingPolicy.from_config({"Tue": ["09:00-12:00", "12:00-20:00"]}))
    assert adjacent.remaining_today(tokyo(2026, 11, 24, 11)) == timedelta(hours=9)


def test_default_policy() -> None:
    policy = CallingPolicy.default()
    assert set(policy.weekly_hours) == set(range(6))
    assert all(hours == (DailyHours(time(9), time(20)),) for hours in policy.weekly_hours.values())
    assert policy.year_end_closure and policy.observe_national_holidays
    assert DEFAULT.closed_reason(tokyo(2026, 11, 29, 12)) is ClosedReason.OUTSIDE_HOURS  # Sunday
    assert policy == CallingPolicy.from_config({d: ["09:00-20:00"] for d in ALL_DAYS[:6]})


def test_policy_does_not_follow_later_changes_to_its_inputs() -> None:
    weekly = {0: (DailyHours(time(9), time(17)),)}
    policy = CallingPolicy(weekly)
    weekly[6] = (DailyHours(time(9), time(17)),)
    assert 6 not in policy.weekly_hours


# --- parsing and configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "25:00-26:00",
        "10:00-09:00",
        "abc",
        "09:00-09:00",
        "09:00",
        "9-17",
        "09:60-10:00",
        "２:00-3:00",
    ],
)
def test_bad_hours_are_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_hours(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-20:00", DailyHours(time(9), time(20))),
        (" 9:00 - 17:30 ", DailyHours(time(9), time(17, 30))),
        ("08:00-24:00", DailyHours(time(8), time.max)),
    ],
)
def test_good_hours(text: str, expected: DailyHours) -> None:
    assert parse_hours(text) == expected


def test_daily_hours_must_end_after_they_start() -> None:
    with pytest.raises(ValueError, match="end after"):
        DailyHours(time(10), time(9))


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({"funday": ["09:00-10:00"]}, "funday"),
        ({"mon": ["09:00-10:00"], "MON": ["11:00-12:00"]}, "twice"),
        ({"mon": "09:00-10:00"}, "list"),
        ({"mon": ["9am-5pm"]}, "9am-5pm"),
    ],
)
def test_bad_weekly_configuration(weekly: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CallingPolicy.from_config(weekly)


def test_bad_policy_values() -> None:
    with pytest.raises(ValueError, match="weekday 7"):
        CallingPolicy({7: (DailyHours(time(9), time(10)),)})
    with pytest.raises(ValueError, match="closure date"):
        CallingPolicy({}, frozenset({datetime(2026, 11, 25, 0, 0)}))
