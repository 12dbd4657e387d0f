"""Pure parts of the reports: intervals, the holdout draw, attempt metrics, sections."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.holdout import draw_holdout
from kernel.aggregates import attempt_metrics, is_right_party, is_snapshot_metric, operator_metrics
from kernel.errors import InvalidInput
from kernel.models import Attempt, Channel
from reports.build import month_bounds
from reports.effect import Effect, GroupFigures, newcombe_difference, wilson
from reports.model import Figures, Report
from reports.sections import Percent, effect_section, format_cell, summary_section

NOW = datetime(2026, 11, 5, 1, 0, tzinfo=UTC)


def test_wilson_matches_published_values() -> None:
    low, high = wilson(0, 10).low, wilson(0, 10).high
    assert (low, round(high, 4)) == (0.0, 0.2775)
    interval = wilson(5, 10)
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.2366, 0.7634)


def test_newcombe_matches_his_worked_example() -> None:
    # Newcombe (1998), example (a): 56/70 - 48/80, method 10 -> 0.0524 to 0.3339
    interval = newcombe_difference(56, 70, 48, 80)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0524, 0.3339)
    assert newcombe_difference(1, 10, 0, 0) is None


@given(n_a=st.integers(1, 500), n_b=st.integers(1, 500), a=st.floats(0, 1), b=st.floats(0, 1))
def test_difference_interval_contains_the_estimate(n_a: int, n_b: int, a: float, b: float) -> None:
    paid_a, paid_b = round(a * n_a), round(b * n_b)
    interval = newcombe_difference(paid_a, n_a, paid_b, n_b)
    assert interval is not None
    difference = paid_a / n_a - paid_b / n_b
    assert -1 <= interval.low <= difference + 1e-12
    assert difference - 1e-12 <= interval.high <= 1


def test_effect_needs_both_groups() -> None:
    effect = Effect(GroupFigures(100, 30, 1), GroupFigures(0, 0, 0))
    assert not effect.measured and effect.difference is None and effect.interval is None


@given(
    ids=st.sets(st.integers(1, 10_000), max_size=300), share=st.floats(0, 0.5), seed=st.integers()
)
def test_holdout_draw_is_exact_and_reproducible(ids: set[int], share: float, seed: int) -> None:
    drawn = draw_holdout(list(ids), share, seed)
    assert len(drawn) == round(share * len(ids)) and set(drawn) <= ids
    assert drawn == draw_holdout(sorted(ids, reverse=True), share, seed)


def test_holdout_share_is_bounded() -> None:
    with pytest.raises(InvalidInput):
        draw_holdout([1, 2], 0.9, 1)


def _attempt(**values: object) -> Attempt:
    base: dict[str, object] = {"campaign_id": 1, "channel": Channel.IVR, "scheduled_at": NOW}
    return Attempt(**(base | values))


def test_attempt_metrics() -> None:
    answered = _attempt(answered_at=NOW, duration_seconds=95, outcome_code="rpc_confirmed",
                        promise_amount_yen=12000, carrier_result="completed")  # fmt: skip
    assert attempt_metrics(answered) == {
        "attempts.ivr": 1, "answered.ivr": 1, "talk_seconds.ivr": 95, "rpc.ivr": 1,
        "identity_confirmed.ivr": 1, "outcome.ivr.rpc_confirmed": 1, "promises": 1,
        "promise_yen": 12000, "carrier_result.ivr.completed": 1,
    }  # fmt: skip
    assert attempt_metrics(_attempt(channel=Channel.SMS)) == {"attempts.sms": 1}
    worked = _attempt(channel=Channel.OPERATOR, operator_id=7, answered_at=NOW,
                      duration_seconds=60, outcome_code="no_answer")  # fmt: skip
    assert operator_metrics(worked) == {
        ("operator:7", "op.calls"): 1, ("operator:7", "op.talk_seconds"): 60,
        ("operator:7", "op.results"): 1,
    }  # fmt: skip


def test_outcome_classes_are_generic() -> None:
    assert is_right_party("rpc_promise_callback") and is_right_party("promise_kept_later")
    assert not is_right_party("wrong_party") and not is_right_party(None)
    assert is_snapshot_metric("targets.phone_known") and not is_snapshot_metric("attempts.ivr")


def _report(total: Figures) -> Report:
    return Report("daily", date(2026, 11, 5), date(2026, 11, 5), NOW, [], total, {}, [])


def test_summary_rates_and_formatting() -> None:
    figures = Figures({"attempts.ivr": 10, "answered.ivr": 4, "rpc.ivr": 2, "promises": 1})
    rows = {row[0]: row[1] for row in summary_section(_report(figures)).rows}
    assert (
        rows["接触率 (応答/架電)"] == Percent(0.4)
        and format_cell(rows["接触率 (応答/架電)"]) == "40.0%"
    )
    assert rows["約束率 (約束/本人接触)"] == 0.5 and rows["対象者数"] == 0
    assert format_cell(None) == "-" and format_cell(12345) == "12,345"
    assert Figures({"a": 1}) + Figures({"a": 2, "b": 1}) == Figures({"a": 3, "b": 1})


def test_effect_section_lists_both_groups() -> None:
    from reports.model import CampaignReport

    figures = Figures({"effect.contact.persons": 90, "effect.contact.paid": 30,
                       "effect.holdout.persons": 10, "effect.holdout.paid": 1})  # fmt: skip
    report = _report(figures)
    report.campaigns.append(CampaignReport(3, "十一月", "running", figures, {}, []))
    rows = effect_section(report).rows
    assert [r[1] for r in rows] == ["接触群", "保留群"]
    assert rows[0][6] == pytest.approx(30 / 90 - 0.1) and "〜" in str(rows[0][7])


def test_month_bounds() -> None:
    assert month_bounds("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    with pytest.raises(InvalidInput):
        month_bounds("2026/02")
