"""The contact plan: what to try next for a target, and when (R-1..R-3). Pure functions.

A target starts on its import channel (IVR, operator or letter). After each attempt,
:func:`next_contact` decides the follow-up from the outcome and the target's history:

* busy retries after minutes; no answer (and the other "did not reach the person" results)
  after hours, preferring a weekday and time band not tried before;
* a mobile number gets one SMS once a call has not reached the person, then calls go on;
* a wrong number moves to the target's next phone, or to a letter when none is left;
* a resident who asked to be called back gets an operator call;
* an answered call that reached the person (or a refusal, an opt-out, a transfer to an
  operator) ends the automated plan;
* every scheduled contact lies inside the calling window and within the caps per day and per
  rolling 7 days (counted over the target's contacts, so per number as well).
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


# Carrier-level results that never reached the IVR flow (normalized, see normalize_outcome).
BUSY = "busy"
NO_ANSWER = "no_answer"
FAILED = "failed"
LOST = "lost"  # a call a dead dialer process left behind (dialer.reconcile)
CARRIER_ERROR = "carrier_error"  # the carrier kept refusing the request
SMS_SENT = "sms_sent"
CALLBACK_REQUESTED = "rpc_promise_callback"
WRONG_NUMBER = "wrong_number"
WRONG_PARTY = "wrong_party"
#: Outcomes after which the automated plan stops for this target.
FINAL_OUTCOMES = frozenset(
    {"rpc_confirmed", "paid_claimed", "refused", "do_not_call", "transferred"}
)
#: Outcomes meaning the call did not reach the person (retry later, maybe SMS first).
UNREACHED_OUTCOMES = frozenset(
    {NO_ANSWER, FAILED, LOST, CARRIER_ERROR, "machine", "no_input", "hangup_before_confirm"}
)
_ALIASES = {"no-answer": NO_ANSWER, "canceled": FAILED, "cancelled": FAILED}
SEARCH_STEPS = 200  # time bands examined when looking for a slot within the caps


def normalize_outcome(outcome: str | None) -> str:
    """One vocabulary for IVR outcome codes and carrier results (``no-answer`` -> ``no_answer``)."""
    if not outcome:
        return FAILED
    return _ALIASES.get(outcome, outcome)


@dataclass(frozen=True)
class PlanPolicy:
    max_call_attempts: int = 4
    max_attempts_per_day: int = 2
    max_attempts_per_week: int = 7
    busy_retry: timedelta = timedelta(minutes=15)
    no_answer_retry: timedelta = timedelta(hours=4)
    sms_follow_up: bool = True
    sms_after_unreached_calls: int = 1
    letter_fallback: bool = True


@dataclass(frozen=True)
class PhoneView:
    phone_id: int
    kind: PhoneKind
    usable: bool = True


@dataclass(frozen=True)
class PastAttempt:
    """A contact that actually went out (placed call, sent SMS); refusals are not contacts."""

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
    outcome: str | None,
    history: Sequence[PastAttempt],
    phones: Sequence[PhoneView],
    window: CallingWindow,
    now: datetime,
    policy: PlanPolicy,
) -> PlannedContact | None:
    """The follow-up after an attempt ended with ``outcome``; None ends the automated plan."""
    code = normalize_outcome(outcome)
    if code in FINAL_OUTCOMES:
        return None
    usable = _usable_after(code, history, phones)
    if code == CALLBACK_REQUESTED:
        usable_ids = [phone.phone_id for phone in usable]
        last = _last_phone(history)
        phone_id = last if last in usable_ids else (usable_ids[0] if usable_ids else None)
        return _operator(history, phone_id, window, now, policy)
    if not usable:
        return _letter(policy, now, "no_usable_phone")
    calls = [a for a in history if a.channel in (Channel.IVR, Channel.OPERATOR)]
    if len(calls) >= policy.max_call_attempts:
        return _after_calls_exhausted(history, usable, window, now, policy)
    if code == BUSY:
        return _retry(history, usable, window, now + policy.busy_retry, policy, "busy_retry")
    if code in (WRONG_NUMBER, WRONG_PARTY):
        return _retry(history, usable, window, now + policy.no_answer_retry, policy, code)
    if code in UNREACHED_OUTCOMES or code == SMS_SENT:
        if code != LOST and _sms_due(history, usable, policy):  # a lost call may have rung
            return _sms(history, usable, window, now, policy)
        earliest = now + policy.no_answer_retry
        return _retry(history, usable, window, earliest, policy, "no_answer_retry")
    return None


def _usable_after(
    code: str, history: Sequence[PastAttempt], phones: Sequence[PhoneView]
) -> list[PhoneView]:
    """Usable phones; after a wrong number the phone just tried is no longer one of them."""
    wrong = _last_phone(history) if code == WRONG_NUMBER else None
    return [phone for phone in phones if phone.usable and phone.phone_id != wrong]


def _last_phone(history: Sequence[PastAttempt]) -> int | None:
    return history[-1].phone_id if history else None


def _letter(policy: PlanPolicy, now: datetime, reason: str) -> PlannedContact | None:
    return PlannedContact(Channel.LETTER, None, now, reason) if policy.letter_fallback else None


def _operator(
    history: Sequence[PastAttempt],
    phone_id: int | None,
    window: CallingWindow,
    now: datetime,
    policy: PlanPolicy,
) -> PlannedContact | None:
    start = _slot_respecting_caps(history, window, now, policy, avoid_repeat=False)
    if start is None:
        return None
    return PlannedContact(Channel.OPERATOR, phone_id, start, "callback_requested")


def _sms_due(
    history: Sequence[PastAttempt], phones: Sequence[PhoneView], policy: PlanPolicy
) -> bool:
    """A mobile's next contact may be an SMS once calls have not reached the person (R-3)."""
    has_mobile = any(phone.kind is PhoneKind.MOBILE for phone in phones)
    already_sent = any(a.channel is Channel.SMS for a in history)
    calls = sum(1 for a in history if a.channel is Channel.IVR)
    return (
        policy.sms_follow_up
        and has_mobile
        and not already_sent
        and calls >= policy.sms_after_unreached_calls
    )


def _sms(
    history: Sequence[PastAttempt],
    phones: Sequence[PhoneView],
    window: CallingWindow,
    now: datetime,
    policy: PlanPolicy,
) -> PlannedContact | None:
    mobile = next(phone for phone in phones if phone.kind is PhoneKind.MOBILE)
    start = _slot_respecting_caps(history, window, now, policy, avoid_repeat=False)
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
            return _sms(history, phones, window, now, policy)
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
    and time band not tried before (answer rates differ by both; R-3). None when no such
    instant exists within the search horizon: the caps are never exceeded."""
    candidate = window.next_open(earliest)
    fallback: datetime | None = None
    for _ in range(SEARCH_STEPS):
        if candidate is None:
            return fallback
        if within_caps(history, candidate, policy):
            if not avoid_repeat or _is_new_slot(history, candidate) or _tried_all_bands(history):
                return candidate
            fallback = fallback or candidate
        candidate = window.next_open(_next_band_start(candidate))
    return fallback


def within_caps(history: Sequence[PastAttempt], at: datetime, policy: PlanPolicy) -> bool:
    """May one more contact happen at ``at``? Counts the local day and the 7 days either side
    (so a clock that jumped back cannot hide contacts that lie "in the future")."""
    day = at.astimezone(TOKYO).date()
    same_day = sum(1 for a in history if a.started_at.astimezone(TOKYO).date() == day)
    week = sum(1 for a in history if abs(at - a.started_at) < timedelta(days=7))
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
