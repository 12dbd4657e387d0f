"""Eligibility (initial delinquency), exclusion rules and channel choice. Pure."""

from __future__ import annotations

from datetime import date

import pytest

from kernel.models import Channel, PhoneKind
from sync.eligibility import (
    Candidate,
    EligibilityPolicy,
    ExclusionRule,
    choose_channel,
    delinquency_rule,
    exclusion_rule,
)
from sync.rows import ItemFields, fiscal_year_of

AS_OF = date(2026, 11, 24)  # fiscal year 2026 (令和8年度)
POLICY = EligibilityPolicy(AS_OF, carryover_limit_yen=100_000)


def item(fiscal_year: int, due: date, unpaid: int) -> ItemFields:
    return ItemFields(
        department="納税課",
        kind="市県民税",
        fiscal_year=fiscal_year,
        period=str(due.month),
        notice_number=None,
        due_date=due,
        unpaid_yen=unpaid,
        late_fee_yen=0,
        demand_date=None,
        installment=None,
        account_transfer=False,
    )


PAST_DUE = item(2026, date(2026, 6, 30), 10_000)


def test_fiscal_year_runs_april_to_march() -> None:
    assert fiscal_year_of(date(2027, 3, 31)) == 2026
    assert fiscal_year_of(date(2027, 4, 1)) == 2027


def test_current_year_arrears_past_due_are_a_target() -> None:
    assert delinquency_rule([PAST_DUE], POLICY) is None


def test_nothing_past_due() -> None:
    due_today = item(2026, AS_OF, 5_000)
    paid_past = item(2026, date(2026, 6, 30), 0)
    assert delinquency_rule([due_today, paid_past], POLICY) is ExclusionRule.NOT_DUE
    assert delinquency_rule([item(2026, date(2026, 11, 23), 1)], POLICY) is None


@pytest.mark.parametrize(
    ("carried", "rule"),
    [(99_999, None), (100_000, ExclusionRule.NOT_INITIAL_DELINQUENCY)],
)
def test_carryover_limit_is_exclusive(carried: int, rule: ExclusionRule | None) -> None:
    older = [item(2025, date(2025, 6, 30), carried - 1_000), item(2024, date(2024, 6, 30), 1_000)]
    assert delinquency_rule([PAST_DUE, *older], POLICY) is rule


def test_old_arrears_alone_count_as_past_due_but_not_initial() -> None:
    assert delinquency_rule([item(2023, date(2023, 6, 30), 500)], POLICY) is None
    heavy = item(2023, date(2023, 6, 30), 150_000)
    assert delinquency_rule([heavy], POLICY) is ExclusionRule.NOT_INITIAL_DELINQUENCY


def test_fiscal_year_boundary_of_the_as_of_date() -> None:
    previous_year_item = item(2025, date(2026, 1, 31), 120_000)
    march = EligibilityPolicy(date(2026, 3, 31))
    april = EligibilityPolicy(date(2026, 4, 1))
    assert delinquency_rule([previous_year_item], march) is None
    assert delinquency_rule([previous_year_item], april) is ExclusionRule.NOT_INITIAL_DELINQUENCY


@pytest.mark.parametrize(
    ("flags", "rule"),
    [
        ({"dv_protected": True, "suppressed": True}, ExclusionRule.DV_PROTECTED),
        ({"on_exclusion_list": True, "suppressed": True}, ExclusionRule.EXCLUSION_LIST),
        ({"suppressed": True, "installment_kept": True}, ExclusionRule.SUPPRESSED),
        ({"installment_kept": True}, ExclusionRule.INSTALLMENT_KEPT),
        ({"phones": 2, "phones_do_not_call": 2}, ExclusionRule.DO_NOT_CALL),
        ({"phones": 2, "phones_do_not_call": 1}, None),
        ({"phones": 0, "phones_do_not_call": 0}, None),
    ],
)
def test_rules_apply_in_order(flags: dict[str, object], rule: ExclusionRule | None) -> None:
    candidate = Candidate(items=[PAST_DUE], **flags)  # type: ignore[arg-type]
    assert exclusion_rule(candidate, POLICY) is rule


def test_protection_wins_over_not_due() -> None:
    candidate = Candidate(items=[item(2026, date(2027, 1, 31), 1)], dv_protected=True)
    assert exclusion_rule(candidate, POLICY) is ExclusionRule.DV_PROTECTED
    assert exclusion_rule(Candidate(items=candidate.items), POLICY) is ExclusionRule.NOT_DUE


@pytest.mark.parametrize(
    ("phones", "kana", "channel"),
    [
        ([PhoneKind.MOBILE], True, Channel.IVR),
        ([PhoneKind.FIXED_LINE, PhoneKind.MOBILE], True, Channel.IVR),
        ([PhoneKind.FIXED_LINE], False, Channel.OPERATOR),
        ([], True, Channel.LETTER),
        ([], False, Channel.LETTER),
    ],
)
def test_channel(phones: list[PhoneKind], kana: bool, channel: Channel) -> None:
    assert choose_channel(phones, kana) is channel
