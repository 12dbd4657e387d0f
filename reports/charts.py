"""Charts drawn on the server (matplotlib, Agg, PNG) with the same Japanese font as the PDF.

The console serves :func:`chart_png` output as ``image/png``; the PDF embeds the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from reports.model import Figures, Report  # noqa: E402
from reports.sections import CHANNEL_LABELS  # noqa: E402

FUNNEL: tuple[tuple[str, Callable[[Figures], int]], ...] = (
    ("架電", lambda f: f.call_attempts),
    ("応答", lambda f: f.answered),
    ("本人接触", lambda f: f.right_party),
    ("納付約束", lambda f: f.promises),
)
MAX_OUTCOMES = 12


def _font_family(font: Path) -> str:
    font_manager.fontManager.addfont(str(font))
    return str(font_manager.FontProperties(fname=str(font)).get_name())


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def funnel_chart(report: Report, family: str) -> Figure:
    """架電 -> 応答 -> 本人接触 -> 納付約束, one group of bars per campaign and in total."""
    figure, axes = plt.subplots(figsize=(8, 3.6))
    groups = [("合計", report.total)] + [(f"#{c.campaign_id}", c.total) for c in report.campaigns]
    width = 0.8 / len(FUNNEL)
    for index, (label, get) in enumerate(FUNNEL):
        values = [get(figures) for _, figures in groups]
        positions = [g + index * width for g in range(len(groups))]
        axes.bar(positions, values, width=width, label=label)
    axes.set_xticks([g + width * (len(FUNNEL) - 1) / 2 for g in range(len(groups))])
    axes.set_xticklabels([name for name, _ in groups], fontfamily=family)
    axes.set_title(f"{report.title}: 接触の段階", fontfamily=family)
    axes.legend(prop={"family": family})
    return figure


def outcomes_chart(report: Report, family: str) -> Figure:
    """The most frequent outcome codes over all campaigns (horizontal bars)."""
    outcomes = sorted(report.total.outcomes.items(), key=lambda item: -item[1])[:MAX_OUTCOMES]
    figure, axes = plt.subplots(figsize=(8, 0.4 * max(len(outcomes), 3) + 1))
    labels = [
        f"{CHANNEL_LABELS.get(code.partition('.')[0], code)} {code.partition('.')[2]}"
        for code, _ in outcomes
    ]
    axes.barh(labels[::-1], [count for _, count in outcomes][::-1])
    axes.set_yticks(range(len(labels)))
    axes.set_yticklabels(labels[::-1], fontfamily=family)
    axes.set_title(f"{report.title}: 結果コード別件数", fontfamily=family)
    return figure


CHARTS: dict[str, Callable[[Report, str], Figure]] = {
    "funnel": funnel_chart,
    "outcomes": outcomes_chart,
}


def chart_png(report: Report, name: str, font: Path) -> bytes:
    """One named chart (``funnel`` or ``outcomes``) as PNG bytes."""
    return _png(CHARTS[name](report, _font_family(font)))
