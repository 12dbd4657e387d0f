"""The calling window never allows a forbidden instant (R-1, R-2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.calendar import (
    HARD_EARLIEST,
    HARD_LATEST,
    TOKYO,
    CallingPolicy,
    CallingWindow,
    ClosedReason,
    DailyHours,
    is_national_holiday,
    parse_hours,
)

DEFAULT = CallingWindow(CallingPolicy.default())
GREEDY = CallingWindow(
    CallingPolicy.from_config(
        {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    )
)


def tokyo(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def _forbidden_day(window: CallingWindow, day: date) -> bool:
    policy = window.policy
    year_end = (day.month, day.day) in {(12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3)}
    return (
        (policy.observe_national_holidays and is_national_holiday(day))
        or (policy.year_end_closure and year_end)
        or day in policy.closure_dates
    )


def _configured(window: CallingWindow, local: datetime) -> bool:
    spans = window.policy.weekly_hours.get(local.weekday(), ())
    return any(h.start <= local.time() < h.end for h in spans)


clock = st.times().map(lambda t: t.replace(microsecond=0))
span = st.tuples(clock, clock).filter(lambda p: p[0] < p[1]).map(lambda p: DailyHours(*p))
policies = st.builds(
    CallingPolicy,
    weekly_hours=st.dictionaries(st.integers(0, 6), st.lists(span, max_size=3).map(tuple)),
    closure_dates=st.frozensets(st.dates(date(2025, 1, 1), date(2028, 12, 31)), max_size=20),
    year_end_closure=st.booleans(),
    observe_national_holidays=st.booleans(),
)
zones = st.sampled_from(
    [UTC, TOKYO, timezone(timedelta(hours=-10)), timezone(timedelta(hours=5, minutes=30))]
)
instants = st.builds(
    lambda dt, zone: dt.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31)),
    zones,
)


def assert_allowed_instant_is_legal(window: CallingWindow, instant: datetime) -> None:
    local = instant.astimezone(TOKYO)
    assert HARD_EARLIEST <= local.time() < HARD_LATEST
    assert not _forbidden_day(window, local.date())
    assert _configured(window, local)


@settings(max_examples=400, deadline=None)
@given(policy=policies, instant=instants)
def test_no_open_instant_is_forbidden(policy: CallingPolicy, instant: datetime) -> None:
    window = CallingWindow(policy)
    if window.is_open(instant):
        assert_allowed_instant_is_legal(window, instant)


@settings(max_examples=200, deadline=None)
@given(policy=policies, instant=instants)
def test_next_open_is_open_and_nothing_earlier_is(policy: CallingPolicy, instant: datetime) -> None:
    window = CallingWindow(policy)
    found = window.next_open(instant, horizon_days=30)
    if found is None:
        probe = instant
        end = instant + timedelta(days=30)
        while probe < end:
            assert not window.is_open(probe)
            probe += timedelta(minutes=37)
        return
    assert found >= instant
    assert window.is_open(found)
    assert_allowed_instant_is_legal(window, found)
    probe = instant
    while probe < found:
        assert not window.is_open(probe)
        probe += max((found - instant) / 50, timedelta(seconds=1))


@settings(max_examples=200, deadline=None)
@given(instant=instants)
def test_hard_limit_holds_even_when_configured_round_the_clock(instant: datetime) -> None:
    local = instant.astimezone(TOKYO)
    if not HARD_EARLIEST <= local.time() < HARD_LATEST:
        assert GREEDY.closed_reason(instant) is ClosedReason.HARD_LIMIT


def test_hard_limit_boundaries() -> None:
    window = CallingWindow(CallingPolicy.from_config({"tue": ["07:00-23:00"]}))
    assert not window.is_open(tokyo(2026, 11, 24, 7, 59, 59))
    assert window.is_open(tokyo(2026, 11, 24, 8, 0))
    assert window.is_open(tokyo(2026, 11, 24, 20, 59, 59))
    assert window.closed_reason(tokyo(2026, 11, 24, 21, 0)) is ClosedReason.HARD_LIMIT


def test_default_window_is_nine_to_eight_monday_to_saturday() -> None:
    assert DEFAULT.is_open(tokyo(2026, 11, 24, 9, 0))  # Tuesday
    assert not DEFAULT.is_open(tokyo(2026, 11, 24, 8, 59))
    assert DEFAULT.closed_reason(tokyo(2026, 11, 24, 20, 0)) is ClosedReason.OUTSIDE_HOURS
    assert DEFAULT.closed_reason(tokyo(2026, 11, 29, 12, 0)) is ClosedReason.OUTSIDE_HOURS  # Sun


def test_utc_input_is_converted_to_tokyo() -> None:
    assert DEFAULT.is_open(datetime(2026, 11, 24, 0, 0, tzinfo=UTC))  # 09:00 JST
    assert not DEFAULT.is_open(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))  # 21:00 JST


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        DEFAULT.is_open(datetime(2026, 11, 24, 10))


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2026, 1, 1), ClosedReason.NATIONAL_HOLIDAY),
        (date(2026, 1, 12), ClosedReason.NATIONAL_HOLIDAY),  # 成人の日
        (date(2026, 5, 6), ClosedReason.NATIONAL_HOLIDAY),  # 振替休日
        (date(2026, 11, 23), ClosedReason.NATIONAL_HOLIDAY),  # 勤労感謝の日
        (date(2026, 12, 29), ClosedReason.CLOSURE_DAY),
        (date(2027, 1, 2), ClosedReason.CLOSURE_DAY),
    ],
)
def test_holidays_and_year_end_are_closed(day: date, reason: ClosedReason) -> None:
    assert DEFAULT.closed_reason(datetime.combine(day, time(10), TOKYO)) is reason


def test_municipal_closure_dates() -> None:
    window = CallingWindow(
        CallingPolicy.from_config({"wed": ["09:00-17:00"]}, [date(2026, 11, 25)])
    )
    assert window.closed_reason(tokyo(2026, 11, 25, 10)) is ClosedReason.CLOSURE_DAY
    assert window.is_open(tokyo(2026, 12, 2, 10))


def test_year_end_closure_can_be_switched_off_but_not_holidays() -> None:
    window = CallingWindow(
        CallingPolicy(CallingPolicy.default().weekly_hours, year_end_closure=False)
    )
    assert window.is_open(tokyo(2026, 12, 29, 10))  # Tuesday
    assert not window.is_open(tokyo(2027, 1, 1, 10))  # 元日 is a national holiday


def test_next_open_rolls_to_the_next_allowed_day() -> None:
    assert DEFAULT.next_open(tokyo(2026, 11, 27, 20, 30)) == tokyo(2026, 11, 28, 9)  # Fri->Sat
    assert DEFAULT.next_open(tokyo(2026, 11, 28, 20, 30)) == tokyo(2026, 11, 30, 9)  # Sat->Mon
    assert DEFAULT.next_open(tokyo(2026, 11, 24, 10, 15)) == tokyo(2026, 11, 24, 10, 15)
    # Tue 12/29 .. Sun 1/3 closed; Mon 2027-01-04 is an ordinary working day.
    assert DEFAULT.next_open(tokyo(2026, 12, 28, 20, 0)) == tokyo(2027, 1, 4, 9)


def test_next_open_gives_up_past_the_horizon() -> None:
    closed = CallingWindow(CallingPolicy({}))
    assert closed.next_open(tokyo(2026, 11, 24, 10), horizon_days=10) is None


def test_remaining_today() -> None:
    assert DEFAULT.remaining_today(tokyo(2026, 11, 24, 19, 30)) == timedelta(minutes=30)
    assert DEFAULT.remaining_today(tokyo(2026, 11, 24, 21, 30)) == timedelta(0)


@pytest.mark.parametrize(
    "text", ["25:00-26:00", "10:00-09:00", "abc", "09:00", "9-17", "09:60-10:00"]
)
def test_bad_hours_are_refused_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="calling hours"):
        parse_hours(text)


def test_unknown_weekday_is_refused() -> None:
    with pytest.raises(ValueError, match="funday"):
        CallingPolicy.from_config({"funday": ["09:00-10:00"]})
