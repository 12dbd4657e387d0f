"""The checks made immediately before every contact (R-1, R-6, caps, SMS to mobiles only)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from dialer.interlocks import POSTPONING, Caps, ContactFacts, Refusal, refusal
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow
from kernel.models import CampaignStatus, Channel, PhoneKind, PhoneStatus, TargetStatus

WINDOW = CallingWindow(CallingPolicy.default())
MAX_AGE = timedelta(hours=24)
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=TOKYO)
OK = ContactFacts(
    now=NOW,
    campaign_status=CampaignStatus.RUNNING,
    target_status=TargetStatus.ACTIVE,
    phone_status=PhoneStatus.USABLE,
    needs_phone=True,
    exclusion_list_as_of=NOW - timedelta(hours=2),
    on_exclusion_list=False,
    on_do_not_call=False,
    channel=Channel.IVR,
    phone_kind=PhoneKind.FIXED_LINE,
)


def test_all_clear() -> None:
    assert refusal(OK, WINDOW, MAX_AGE) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"campaign_status": CampaignStatus.PAUSED}, Refusal.CAMPAIGN_NOT_RUNNING),
        ({"target_status": None}, Refusal.PERSON_GONE),
        ({"now": NOW.replace(hour=21, minute=0)}, Refusal.OUTSIDE_WINDOW),
        ({"now": NOW.replace(hour=7, minute=59)}, Refusal.OUTSIDE_WINDOW),
        ({"exclusion_list_as_of": None}, Refusal.EXCLUSION_LIST_MISSING),
        ({"exclusion_list_as_of": NOW - timedelta(hours=25)}, Refusal.EXCLUSION_LIST_STALE),
        ({"on_exclusion_list": True}, Refusal.EXCLUDED),
        ({"target_status": TargetStatus.PAID}, Refusal.PAID),
        ({"target_status": TargetStatus.STOPPED}, Refusal.TARGET_STOPPED),
        ({"target_status": TargetStatus.HOLDOUT}, Refusal.TARGET_STOPPED),
        ({"on_do_not_call": True}, Refusal.DO_NOT_CALL),
        ({"phone_status": PhoneStatus.WRONG_NUMBER}, Refusal.PHONE_UNUSABLE),
        ({"channel": Channel.SMS}, Refusal.NOT_MOBILE),
        ({"number_contacts_today": 2}, Refusal.CAP_REACHED),
        ({"number_contacts_week": 7}, Refusal.CAP_REACHED),
    ],
)
def test_each_interlock_refuses(change: dict[str, object], expected: Refusal) -> None:
    assert refusal(replace(OK, **change), WINDOW, MAX_AGE) is expected  # type: ignore[arg-type]


def test_sms_to_a_mobile_passes() -> None:
    facts = replace(OK, channel=Channel.SMS, phone_kind=PhoneKind.MOBILE)
    assert refusal(facts, WINDOW, MAX_AGE) is None


def test_caps_are_configurable() -> None:
    facts = replace(OK, number_contacts_today=2)
    assert refusal(facts, WINDOW, MAX_AGE, Caps(per_day=3, per_week=7)) is None


def test_a_stale_list_is_refused_even_for_a_target_that_is_otherwise_fine() -> None:
    """R-6: nothing is sent on a stale list, whatever else is true."""
    facts = replace(OK, exclusion_list_as_of=NOW - MAX_AGE - timedelta(seconds=1))
    assert refusal(facts, WINDOW, MAX_AGE) is Refusal.EXCLUSION_LIST_STALE


def test_what_only_postpones() -> None:
    assert Refusal.OUTSIDE_WINDOW in POSTPONING and Refusal.CAP_REACHED in POSTPONING
    assert Refusal.PAID not in POSTPONING and Refusal.EXCLUDED not in POSTPONING


def test_letters_need_no_window_nor_phone() -> None:
    facts = replace(OK, needs_phone=False, phone_status=None, now=NOW.replace(hour=23))
    assert refusal(facts, WINDOW, MAX_AGE) is None
