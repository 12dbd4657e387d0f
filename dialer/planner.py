"""The contact plan: what to try next for a target, and when (R-1..R-3). Pure functions.

A target starts on its import channel (IVR, operator or letter). After each attempt,
:func:`next_contact` decides the follow-up from the outcome and the target's history:
busy retries after minutes, no answer after hours on another weekday and time band, a
mobile number gets an SMS once calls have not reached the person, a wrong number moves to
the next phone or to a letter, and an answered call that reached the person ends the
automated plan (or hands it to an operator when the resident asked for one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kernel.calendar import TOKYO, CallingWindow
from kernel.models import Channel, PhoneKind


class TimeBand(StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


def time_band(instant: datetime) -> TimeBand:
    hour = instant.astimezone(TOKYO).hour
    if hour < 12:
        return TimeBand.MORNING
    return TimeBand.AFTERNOON if hour < 17 else TimeBand.EVENING


# Carrier-level results that never reached the IVR flow.
BUSY = "busy"
NO_ANSWER = "no_answer"
FAILED = "failed"
# Outcomes after which the automated plan stops for this target.
FINAL_OUTCOMES = frozenset(
    {"rpc_confirmed", "paid_claimed", "refused", "do_not_call", "transferred", "sms_sent"}
)
UNREACHED_OUTCOMES = frozenset({NO_ANSWER, FAILED, "machine", "no_input", "hangup_before_confirm"})


@dataclass(frozen=True)
class PlanPolicy:
    max_call_attempts: int = 4
    max_attempts_per_day: int = 2
    max_attempts_per_week: int = 7
    busy_retry: timedelta = timedelta(minutes=15)
    no_answer_retry: timedelta = timedelta(hours=4)
    sms_follow_up: bool = True
    letter_fallback: bool = True


@dataclass(frozen=True)
class PhoneView:
    phone_id: int
    kind: PhoneKind
    usable: bool = True


@dataclass(frozen=True)
class PastAttempt:
    channel: Channel
    phone_id: int | None
    started_at: datetime
    outcome: str | None


@dataclass(frozen=True)
class PlannedContact:
    channel: Channel
    phone_id: int | None
    not_before: datetime
    reason: str


def first_contact(
    channel: Channel, phones: Sequence[PhoneView], window: CallingWindow, now: datetime
) -> PlannedContact | None:
    """The opening contact for a freshly loaded target."""
    usable = [phone for phone in phones if phone.usable]
    if channel is Channel.LETTER or not usable:
        return PlannedContact(Channel.LETTER, None, now, "no_usable_phone")
    start = window.next_open(now)
    if start is None:
        return None
    return PlannedContact(channel, usable[0].phone_id, start, "initial")


def next_contact(
    outcome: str,
    history: Sequence[PastAttempt],
    phones: Sequence[PhoneView],
    window: CallingWindow,
    now: datetime,
    policy: PlanPolicy,
) -> PlannedContact | None:
    """The follow-up after an attempt ended with ``outcome``; None ends the automated plan."""
    if outcome in FINAL_OUTCOMES:
        return None
    if outcome == "rpc_promise_callback":
        return PlannedContact(Channel.OPERATOR, _last_phone(history), now, "callback_requested")
    usable = [phone for phone in phones if phone.usable]
    if outcome == "wrong_number" or not usable:
        return _letter(policy, now, "no_usable_phone")
    calls = [a for a in history if a.channel in (Channel.IVR, Channel.OPERATOR)]
    if len(calls) >= policy.max_call_attempts:
        return _after_calls_exhausted(history, usable, window, now, policy)
    if outcome == BUSY:
        return _retry(history, usable, window, now + policy.busy_retry, policy, "busy_retry")
    if outcome == "wrong_party":
        return _retry(history, usable, window, now + policy.no_answer_retry, policy, "wrong_party")
    if outcome in UNREACHED_OUTCOMES:
        if _sms_due(history, usable, policy):
            return _sms(usable, window, now)
        earliest = now + policy.no_answer_retry
        return _retry(history, usable, window, earliest, policy, "no_answer_retry")
    return None


def _last_phone(history: Sequence[PastAttempt]) -> int | None:
    return history[-1].phone_id if history else None


def _letter(policy: PlanPolicy, now: datetime, reason: str) -> PlannedContact | None:
    return PlannedContact(Channel.LETTER, None, now, reason) if policy.letter_fallback else None


def _sms_due(
    history: Sequence[PastAttempt], phones: Sequence[PhoneView], policy: PlanPolicy
) -> bool:
    """A mobile's second contact may be an SMS once a call has not reached the person (R-3)."""
    has_mobile = any(phone.kind is PhoneKind.MOBILE for phone in phones)
    already_sent = any(a.channel is Channel.SMS for a in history)
    calls = sum(1 for a in history if a.channel is Channel.IVR)
    return policy.sms_follow_up and has_mobile and not already_sent and calls >= 2


def _sms(
    phones: Sequence[PhoneView], window: CallingWindow, now: datetime
) -> PlannedContact | None:
    mobile = next(phone for phone in phones if phone.kind is PhoneKind.MOBILE)
    start = window.next_open(now)
    return None if start is None else PlannedContact(Channel.SMS, mobile.phone_id, start, "sms")


def _after_calls_exhausted(
    history: Sequence[PastAttempt],
    phones: Sequence[PhoneView],
    window: CallingWindow,
    now: datetime,
    policy: PlanPolicy,
) -> PlannedContact | None:
    if any(p.kind is PhoneKind.MOBILE for p in phones) and policy.sms_follow_up:
        if not any(a.channel is Channel.SMS for a in history):
            return _sms(phones, window, now)
    return _letter(policy, now, "calls_exhausted")


def _retry(
    history: Sequence[PastAttempt],
    phones: Sequence[PhoneView],
    window: CallingWindow,
    earliest: datetime,
    policy: PlanPolicy,
    reason: str,
) -> PlannedContact | None:
    phone = _rotate_phone(history, phones)
    start = _slot_respecting_caps(
        history, window, earliest, policy, avoid_repeat=reason != "busy_retry"
    )
    if start is None:
        return None
    return PlannedContact(Channel.IVR, phone.phone_id, start, reason)


def _rotate_phone(history: Sequence[PastAttempt], phones: Sequence[PhoneView]) -> PhoneView:
    """Alternate between a target's usable phones, starting with the least tried."""
    tries = {phone.phone_id: 0 for phone in phones}
    for attempt in history:
        if attempt.phone_id in tries:
            tries[attempt.phone_id] += 1
    return min(phones, key=lambda phone: (tries[phone.phone_id], phone.phone_id))


def _slot_respecting_caps(
    history: Sequence[PastAttempt],
    window: CallingWindow,
    earliest: datetime,
    policy: PlanPolicy,
    *,
    avoid_repeat: bool,
) -> datetime | None:
    """The first open instant >= earliest within the daily/weekly caps, preferring a weekday
    and time band not tried before (answer rates differ by both; R-3)."""
    candidate = window.next_open(earliest)
    for _ in range(60):
        if candidate is None:
            return None
        if _within_caps(history, candidate, policy) and (
            not avoid_repeat or _is_new_slot(history, candidate) or _tried_all_bands(history)
        ):
            return candidate
        candidate = window.next_open(_next_band_start(candidate))
    return candidate


def _within_caps(history: Sequence[PastAttempt], at: datetime, policy: PlanPolicy) -> bool:
    day = at.astimezone(TOKYO).date()
    same_day = sum(1 for a in history if a.started_at.astimezone(TOKYO).date() == day)
    week = sum(1 for a in history if timedelta(0) <= at - a.started_at < timedelta(days=7))
    return same_day < policy.max_attempts_per_day and week < policy.max_attempts_per_week


def _is_new_slot(history: Sequence[PastAttempt], at: datetime) -> bool:
    local = at.astimezone(TOKYO)
    tried = {
        (a.started_at.astimezone(TOKYO).weekday(), time_band(a.started_at))
        for a in history
        if a.channel is Channel.IVR
    }
    tried_days = {weekday for weekday, _band in tried}
    tried_bands = {band for _day, band in tried}
    return local.weekday() not in tried_days or time_band(local) not in tried_bands


def _tried_all_bands(history: Sequence[PastAttempt]) -> bool:
    return len({time_band(a.started_at) for a in history}) >= len(TimeBand)


def _next_band_start(instant: datetime) -> datetime:
    local = instant.astimezone(TOKYO)
    for hour in (12, 17):
        if local.hour < hour:
            return local.replace(hour=hour, minute=0, second=0, microsecond=0)
    following = local + timedelta(days=1)
    return following.replace(hour=0, minute=0, second=0, microsecond=0)
