"""The contact plan (R-1..R-3): examples, then properties over random histories."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.planner import (
    PastAttempt,
    PhoneView,
    PlanPolicy,
    first_contact,
    next_contact,
    normalize_outcome,
    time_band,
    within_caps,
)
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow
from kernel.models import Channel, PhoneKind

WINDOW = CallingWindow(CallingPolicy.default())
POLICY = PlanPolicy()
MONDAY_10 = datetime(2026, 12, 7, 10, 0, tzinfo=TOKYO)
MOBILE = PhoneView(1, PhoneKind.MOBILE)
FIXED = PhoneView(2, PhoneKind.FIXED_LINE)


def call(at: datetime, outcome: str = "no_answer", phone: int = 1) -> PastAttempt:
    return PastAttempt(Channel.IVR, phone, at, outcome)


def test_first_contact_opens_in_the_window() -> None:
    sunday_night = datetime(2026, 12, 6, 22, 0, tzinfo=TOKYO)
    planned = first_contact(Channel.IVR, [FIXED], WINDOW, sunday_night)
    assert planned is not None
    assert planned.not_before == MONDAY_10.replace(hour=9)
    assert (planned.channel, planned.phone_id) == (Channel.IVR, 2)


def test_no_usable_phone_means_a_letter() -> None:
    unusable = PhoneView(3, PhoneKind.MOBILE, usable=False)
    planned = first_contact(Channel.IVR, [unusable], WINDOW, MONDAY_10)
    assert planned is not None and planned.channel is Channel.LETTER


def test_busy_is_retried_after_minutes() -> None:
    planned = next_contact("busy", [call(MONDAY_10, "busy", 2)], [FIXED], WINDOW, MONDAY_10, POLICY)
    assert planned is not None and planned.not_before == MONDAY_10 + timedelta(minutes=15)


def test_no_answer_on_a_fixed_line_is_retried_hours_later_in_another_band() -> None:
    history = [call(MONDAY_10, "no-answer", 2)]
    planned = next_contact("no-answer", history, [FIXED], WINDOW, MONDAY_10, POLICY)
    assert planned is not None and planned.channel is Channel.IVR
    assert planned.not_before >= MONDAY_10 + timedelta(hours=4)
    assert time_band(planned.not_before) != time_band(MONDAY_10)


def test_a_mobile_not_reached_gets_one_sms_then_calls_again() -> None:
    history = [call(MONDAY_10)]
    sms = next_contact("no_answer", history, [MOBILE], WINDOW, MONDAY_10, POLICY)
    assert sms is not None and sms.channel is Channel.SMS and sms.phone_id == 1
    history.append(PastAttempt(Channel.SMS, 1, MONDAY_10, "sms_sent"))
    later = MONDAY_10 + timedelta(days=1)
    after_sms = next_contact("sms_sent", history, [MOBILE], WINDOW, later, POLICY)
    assert after_sms is not None and after_sms.channel is Channel.IVR


def test_a_lost_call_is_never_followed_by_an_immediate_contact() -> None:
    planned = next_contact("lost", [call(MONDAY_10, "lost")], [MOBILE], WINDOW, MONDAY_10, POLICY)
    assert planned is not None and planned.channel is Channel.IVR
    assert planned.not_before >= MONDAY_10 + POLICY.no_answer_retry


def test_a_callback_request_goes_to_an_operator_inside_the_window() -> None:
    evening = MONDAY_10.replace(hour=20, minute=30)
    planned = next_contact(
        "rpc_promise_callback",
        [call(evening, "rpc_promise_callback")],
        [MOBILE],
        WINDOW,
        evening,
        POLICY,
    )
    assert planned is not None and planned.channel is Channel.OPERATOR
    assert WINDOW.is_open(planned.not_before)


def test_a_wrong_number_moves_to_the_next_phone_then_to_a_letter() -> None:
    history = [call(MONDAY_10, "wrong_number", 1)]
    other = next_contact("wrong_number", history, [MOBILE, FIXED], WINDOW, MONDAY_10, POLICY)
    assert other is not None and other.phone_id == 2
    letter = next_contact("wrong_number", history, [MOBILE], WINDOW, MONDAY_10, POLICY)
    assert letter is not None and letter.channel is Channel.LETTER


def test_reaching_the_person_ends_the_plan() -> None:
    for outcome in ("rpc_confirmed", "paid_claimed", "refused", "do_not_call", "transferred"):
        assert (
            next_contact(outcome, [call(MONDAY_10, outcome)], [MOBILE], WINDOW, MONDAY_10, POLICY)
            is None
        )


def test_calls_exhausted_end_with_a_letter() -> None:
    history = [call(MONDAY_10 + timedelta(days=d), phone=2) for d in range(4)]
    planned = next_contact(
        "no_answer", history, [FIXED], WINDOW, MONDAY_10 + timedelta(days=4), POLICY
    )
    assert planned is not None and planned.channel is Channel.LETTER


def test_carrier_results_are_normalized() -> None:
    assert normalize_outcome("no-answer") == "no_answer"
    assert normalize_outcome(None) == "failed"
    assert normalize_outcome("canceled") == "failed"


# ---------------------------------------------------------------------------- properties

OUTCOMES = st.sampled_from(
    [
        "busy",
        "no-answer",
        "no_answer",
        "failed",
        "lost",
        "carrier_error",
        "machine",
        "no_input",
        "hangup_before_confirm",
        "wrong_party",
        "wrong_number",
        "rpc_promise_callback",
        "sms_sent",
        "rpc_confirmed",
    ]
)
START = datetime(2026, 11, 30, 0, 0, tzinfo=TOKYO)
instants = st.integers(min_value=0, max_value=60 * 24 * 60).map(
    lambda minutes: START + timedelta(minutes=minutes)
)
phones = st.lists(
    st.builds(
        PhoneView,
        st.integers(min_value=1, max_value=4),
        st.sampled_from([PhoneKind.MOBILE, PhoneKind.FIXED_LINE]),
        st.booleans(),
    ),
    max_size=3,
    unique_by=lambda p: p.phone_id,
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[PastAttempt], datetime]:
    """Contacts that respect the caps (as the dispatcher enforces them), and a later now."""
    times = sorted(draw(st.lists(instants, max_size=8)))
    kept: list[PastAttempt] = []
    for at in times:
        past = PastAttempt(
            draw(st.sampled_from([Channel.IVR, Channel.SMS])),
            draw(st.integers(min_value=1, max_value=4)),
            at,
            draw(OUTCOMES),
        )
        if within_caps(kept, at, POLICY):
            kept.append(past)
    now = (kept[-1].started_at if kept else START) + timedelta(minutes=draw(st.integers(0, 600)))
    return kept, now


@settings(max_examples=400, deadline=None)
@given(histories(), phones, OUTCOMES)
def test_every_planned_contact_is_inside_the_window_and_within_the_caps(
    history_now: tuple[list[PastAttempt], datetime], views: list[PhoneView], outcome: str
) -> None:
    history, now = history_now
    planned = next_contact(outcome, history, views, WINDOW, now, POLICY)
    if planned is None or planned.channel is Channel.LETTER:
        return
    assert planned.not_before >= now
    assert WINDOW.is_open(planned.not_before)
    local_day = planned.not_before.astimezone(TOKYO).date()
    same_day = [a for a in history if a.started_at.astimezone(TOKYO).date() == local_day]
    assert len(same_day) + 1 <= POLICY.max_attempts_per_day
    week = [
        a for a in history if timedelta(0) <= planned.not_before - a.started_at < timedelta(days=7)
    ]
    assert len(week) + 1 <= POLICY.max_attempts_per_week
    if planned.phone_id is not None:
        assert planned.phone_id in {v.phone_id for v in views if v.usable}
    if planned.channel is Channel.SMS:
        assert next(v for v in views if v.phone_id == planned.phone_id).kind is PhoneKind.MOBILE


@settings(max_examples=200, deadline=None)
@given(instants, phones)
def test_first_contacts_are_inside_the_window(now: datetime, views: list[PhoneView]) -> None:
    planned = first_contact(Channel.IVR, views, WINDOW, now)
    assert planned is not None
    if planned.channel is not Channel.LETTER:
        assert WINDOW.is_open(planned.not_before) and planned.not_before >= now
