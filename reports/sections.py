"""A report as plain tables (sections), the one shape every renderer (rich, CSV, xlsx, PDF)
prints. Labels are Japanese: staff and supervisors read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reports.model import CHANNELS, CampaignReport, Figures, OperatorRow, Report


class Percent(float):
    """A ratio shown as a percentage."""


class Decimal1(float):
    """A plain number shown with one decimal."""


Cell = int | float | str | None

CHANNEL_LABELS = {"ivr": "自動音声", "sms": "SMS", "operator": "オペレータ", "letter": "文書"}

#: (label, getter) rows of the summary and per-kind tables.
ITEMS: tuple[tuple[str, Callable[[Figures], Cell]], ...] = (
    ("対象者数", lambda f: f.targets),
    ("電話番号判明", lambda f: f.phone_known),
    ("電話番号判明率", lambda f: _pct(f.phone_known_rate)),
    ("接触試行 計", lambda f: f.attempts),
    *(
        (f"接触試行 {CHANNEL_LABELS[c]}", (lambda ch: lambda f: f.attempts_by_channel[ch])(c))
        for c in CHANNELS
    ),
    ("応答 (架電)", lambda f: f.answered),
    ("本人接触", lambda f: f.right_party),
    ("本人確認済", lambda f: f.identity_confirmed),
    ("納付約束 件数", lambda f: f.promises),
    ("納付約束 金額 (円)", lambda f: f.promise_yen),
    ("職員引継", lambda f: f.handoffs),
    ("折返し依頼", lambda f: f.callbacks),
    ("SMS 送信", lambda f: f.sms_sent),
    ("SMS 到達", lambda f: f.sms_delivered),
    ("SMS 不達", lambda f: f.sms_failed),
    ("催告書 印刷", lambda f: f.letters_printed),
    ("通話時間 (分)", lambda f: Decimal1(f.talk_seconds / 60)),
    ("接触率 (応答/架電)", lambda f: _pct(f.contact_rate)),
    ("本人接触率 (本人接触/応答)", lambda f: _pct(f.rpc_rate)),
    ("約束率 (約束/本人接触)", lambda f: _pct(f.promise_rate)),
)


def _pct(value: float | None) -> Percent | None:
    return None if value is None else Percent(value)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    header: list[str]
    rows: list[list[Cell]]


def _figures_table(key: str, title: str, columns: list[tuple[str, Figures]]) -> Section:
    header = ["項目", *(name for name, _ in columns)]
    rows = [[label, *(get(figures) for _, figures in columns)] for label, get in ITEMS]
    return Section(key, title, header, rows)


def _campaign_label(campaign: CampaignReport) -> str:
    return f"#{campaign.campaign_id} {campaign.name}"


def summary_section(report: Report) -> Section:
    columns = [("合計", report.total)]
    columns += [(_campaign_label(c), c.total) for c in report.campaigns]
    return _figures_table("summary", "概要 (催告別)", columns)


def kinds_section(report: Report) -> Section:
    columns = list(report.kinds.items())
    return _figures_table("kinds", "債権種別", columns)


def outcomes_section(report: Report) -> Section:
    codes = sorted({code for c in report.campaigns for code in c.total.outcomes})
    header = ["経路", "結果コード", "合計", *(_campaign_label(c) for c in report.campaigns)]
    rows: list[list[Cell]] = []
    for code in codes:
        channel, _, name = code.partition(".")
        counts = [c.total.outcomes.get(code, 0) for c in report.campaigns]
        rows.append([CHANNEL_LABELS.get(channel, channel), name, sum(counts), *counts])
    return Section("outcomes", "結果コード別件数", header, rows)


def _operator_row(row: OperatorRow) -> list[Cell]:
    per_hour = row.results_per_talk_hour
    return [
        row.name,
        row.calls,
        Decimal1(row.talk_seconds / 60),
        row.results,
        row.right_party,
        None if per_hour is None else Decimal1(per_hour),
    ]


def operators_section(report: Report) -> Section:
    header = [
        "オペレータ",
        "架電数",
        "通話時間 (分)",
        "結果入力",
        "本人接触",
        "通話1時間あたり結果",
    ]
    return Section(
        "operators", "オペレータ生産性", header, [_operator_row(r) for r in report.operators]
    )


def effect_section(report: Report) -> Section:
    header = [
        "催告",
        "群",
        "対象者",
        "納付者",
        "納付率",
        "納付額 (円)",
        "納付率の差",
        "95%信頼区間",
    ]
    rows: list[list[Cell]] = []
    for campaign in report.campaigns:
        effect = campaign.total.effect()
        if not effect.measured:
            continue
        interval = effect.interval
        shown = f"{interval.low:+.1%} 〜 {interval.high:+.1%}" if interval else None
        for label, group in (("接触群", effect.contact), ("保留群", effect.holdout)):
            rows.append(
                [_campaign_label(campaign), label, group.persons, group.paid,
                 _pct(group.paid_rate), group.paid_yen, None, None]
            )  # fmt: skip
        rows[-2][6], rows[-2][7] = _pct(effect.difference), shown
    return Section("effect", "効果測定 (接触群と保留群の納付率)", header, rows)


def report_sections(report: Report) -> list[Section]:
    return [
        summary_section(report),
        kinds_section(report),
        outcomes_section(report),
        operators_section(report),
        effect_section(report),
    ]


def format_cell(value: Cell) -> str:
    """How a cell reads in text outputs (table, PDF)."""
    if value is None:
        return "-"
    if isinstance(value, Percent):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value
