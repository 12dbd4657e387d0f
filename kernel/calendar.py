"""The calling window (R-1, R-2): when may a resident be contacted? All in Asia/Tokyo.

* Weekly hours are configured per weekday as half-open intervals ``[start, end)``.
* A hard limit no configuration lifts: never before 08:00 or from 21:00 on (the 貸金業法
  21条 benchmark). Configured hours are clipped to ``[08:00, 21:00)``.
* No contact on Japanese national holidays (the ``holidays`` package, substitute holidays
  and 国民の休日 included), the year-end closure 12/29-1/3, or the municipality's own
  closure dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

TOKYO = ZoneInfo("Asia/Tokyo")
HARD_EARLIEST = time(8, 0)
HARD_LATEST = time(21, 0)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
YEAR_END = ((12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3))
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})", re.ASCII)


@dataclass(frozen=True)
class DailyHours:
    """One half-open span ``[start, end)`` of local (Tokyo) wall-clock time."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("calling hours must be naive wall-clock times (Tokyo is implied)")
        if self.start >= self.end:
            raise ValueError(
                f"calling hours {self.start:%H:%M}-{self.end:%H:%M}: must end after they start"
            )


def _parse_clock(text: str, whole: str) -> time:
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"calling hours {whole!r}: expected HH:MM-HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0):
        return time.max  # "24:00" = end of day; clipped to HARD_LATEST anyway
    if hour > 23 or minute > 59:
        raise ValueError(f"calling hours {whole!r}: {text.strip()} is not a time of day")
    return time(hour, minute)


def parse_hours(text: str) -> DailyHours:
    """``"09:00-20:00"`` -> DailyHours; a ValueError naming the text otherwise."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"calling hours {text!r}: expected HH:MM-HH:MM")
    opens, closes = _parse_clock(start, text), _parse_clock(end, text)
    if opens >= closes:
        raise ValueError(f"calling hours {text!r}: must end after they start")
    return DailyHours(opens, closes)


@dataclass(frozen=True)
class CallingPolicy:
    """Weekly hours (0=Monday..6=Sunday; missing or empty = closed) and closure days."""

    weekly_hours: Mapping[int, tuple[DailyHours, ...]]
    closure_dates: frozenset[date] = field(default_factory=frozenset)
    year_end_closure: bool = True
    observe_national_holidays: bool = True

    def __post_init__(self) -> None:
        for weekday in self.weekly_hours:
            if weekday not in range(7):
                raise ValueError(f"weekday {weekday!r} out of range (0=Monday .. 6=Sunday)")
        for day in self.closure_dates:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise ValueError(f"closure date {day!r} must be a datetime.date (not a datetime)")
        frozen = {weekday: tuple(spans) for weekday, spans in self.weekly_hours.items()}
        object.__setattr__(self, "weekly_hours", MappingProxyType(frozen))
        object.__setattr__(self, "closure_dates", frozenset(self.closure_dates))

    @classmethod
    def default(cls) -> CallingPolicy:
        """Monday-Saturday 09:00-20:00, Sunday closed."""
        nine_to_eight = (DailyHours(time(9), time(20)),)
        return cls(dict.fromkeys(range(6), nine_to_eight))

    @classmethod
    def from_config(
        cls,
        weekly: Mapping[str, Sequence[str]],
        closure_dates: Iterable[date] = (),
        year_end_closure: bool = True,
        observe_national_holidays: bool = True,
    ) -> CallingPolicy:
        """Build from ``{"mon": ["09:00-12:00", "13:00-20:00"], ...}`` (keys case-insensitive)."""
        hours: dict[int, tuple[DailyHours, ...]] = {}
        for key, spans in weekly.items():
            name = key.strip().lower()
            if name not in WEEKDAYS:
                raise ValueError(f"unknown weekday {key!r}; use one of {', '.join(WEEKDAYS)}")
            weekday = WEEKDAYS.index(name)
            if weekday in hours:
                raise ValueError(f"weekday {key!r} is configured twice")
            if isinstance(spans, str):
                raise ValueError(f"weekday {key!r}: expected a list like ['09:00-20:00']")
            hours[weekday] = tuple(parse_hours(span) for span in spans)
        return cls(hours, frozenset(closure_dates), year_end_closure, observe_national_holidays)


class ClosedReason(StrEnum):
    HARD_LIMIT = "hard_limit"
    NATIONAL_HOLIDAY = "national_holiday"
    CLOSURE_DAY = "closure_day"
    OUTSIDE_HOURS = "outside_hours"


@lru_cache(maxsize=64)
def _national_holidays(year: int) -> frozenset[date]:
    # A frozen copy: holidays objects are slow to build and grow silently on lookup.
    return frozenset(holidays.country_holidays("JP", years=year).keys())


def is_national_holiday(day: date) -> bool:
    """True on a JP national holiday (substitute holidays included)."""
    return day in _national_holidays(day.year)


def is_year_end(day: date) -> bool:
    """True on 12/29 .. 1/3."""
    return (day.month, day.day) in YEAR_END


def _local(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("the calling window needs an aware datetime (got a naive one)")
    return instant.astimezone(TOKYO)


def _within_hard_limit(clock: time) -> bool:
    return HARD_EARLIEST <= clock < HARD_LATEST


class CallingWindow:
    """Answers "may we contact now?" and "when next?" for one policy."""

    def __init__(self, policy: CallingPolicy) -> None:
        self.policy = policy

    def day_closed_reason(self, day: date) -> ClosedReason | None:
        """Why the whole day is closed (holiday or closure), None otherwise."""
        if self.policy.observe_national_holidays and is_national_holiday(day):
            return ClosedReason.NATIONAL_HOLIDAY
        if self.policy.year_end_closure and is_year_end(day):
            return ClosedReason.CLOSURE_DAY
        if day in self.policy.closure_dates:
            return ClosedReason.CLOSURE_DAY
        return None

    def closed_reason(self, instant: datetime) -> ClosedReason | None:
        """None when contact is allowed at ``instant``; otherwise why not (hard limit first)."""
        local = _local(instant)
        if not _within_hard_limit(local.time()):
            return ClosedReason.HARD_LIMIT
        day_reason = self.day_closed_reason(local.date())
        if day_reason is not None:
            return day_reason
        if any(start <= local < end for start, end in self.open_intervals(local.date())):
            return None
        return ClosedReason.OUTSIDE_HOURS

    def is_open(self, instant: datetime) -> bool:
        return self.closed_reason(instant) is None

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's open intervals (Tokyo, clipped to the hard limit, overlaps merged)."""
        if self.day_closed_reason(day) is not None:
            return []
        merged: list[tuple[datetime, datetime]] = []
        for hours in sorted(self.policy.weekly_hours.get(day.weekday(), ()), key=_start):
            start = datetime.combine(day, max(hours.start, HARD_EARLIEST), TOKYO)
            end = datetime.combine(day, min(hours.end, HARD_LATEST), TOKYO)
            if start >= end:
                continue
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def next_open(self, after: datetime, *, horizon_days: int = 400) -> datetime | None:
        """The earliest open instant >= ``after`` (Tokyo), None if none within the horizon."""
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be >= 0, got {horizon_days}")
        local = _local(after)
        first = local.date()
        for offset in range(min(horizon_days, (date.max - first).days) + 1):
            for start, end in self.open_intervals(first + timedelta(days=offset)):
                if local < end:
                    return max(start, local)
        return None

    def remaining_today(self, instant: datetime) -> timedelta:
        """Open time left in the interval containing ``instant``; zero when closed."""
        local = _local(instant)
        if not _within_hard_limit(local.time()):
            return timedelta(0)
        for start, end in self.open_intervals(local.date()):
            if start <= local < end:
                return end - local
        return timedelta(0)


def _start(hours: DailyHours) -> time:
    return hours.start
