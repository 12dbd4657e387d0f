"""The report data model (日報・月報), built only from PII-free counters.

:class:`Figures` turns the metric names written by :mod:`kernel.aggregates` into named
figures. Outcome codes are kept generic (``<channel>.<code>``), so new operator result codes
appear in reports without a code change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from reports.effect import Effect, GroupFigures

CHANNELS = ("ivr", "sms", "operator", "letter")
CALL_CHANNELS = ("ivr", "operator")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _by_prefix(metrics: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        name[len(prefix) :]: value
        for name, value in sorted(metrics.items())
        if name.startswith(prefix) and value
    }


@dataclass(frozen=True)
class Figures:
    """The counts of one campaign (or all) and one dimension (total or a receivable kind)."""

    metrics: Mapping[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int:
        return int(self.metrics.get(name, 0))

    def _sum(self, prefix: str, channels: tuple[str, ...] = CHANNELS) -> int:
        return sum(self.get(f"{prefix}.{channel}") for channel in channels)

    @property
    def targets(self) -> int:
        return self.get("targets")

    @property
    def phone_known(self) -> int:
        return self.get("targets.phone_known")

    @property
    def attempts_by_channel(self) -> dict[str, int]:
        return {channel: self.get(f"attempts.{channel}") for channel in CHANNELS}

    @property
    def attempts(self) -> int:
        return self._sum("attempts")

    @property
    def call_attempts(self) -> int:
        return self._sum("attempts", CALL_CHANNELS)

    @property
    def answered(self) -> int:
        return self._sum("answered", CALL_CHANNELS)

    @property
    def right_party(self) -> int:
        return self._sum("rpc", CALL_CHANNELS)

    @property
    def identity_confirmed(self) -> int:
        return self._sum("identity_confirmed", CALL_CHANNELS)

    @property
    def talk_seconds(self) -> int:
        return self._sum("talk_seconds", CALL_CHANNELS)

    @property
    def outcomes(self) -> dict[str, int]:
        return _by_prefix(self.metrics, "outcome.")

    @property
    def handoff_reasons(self) -> dict[str, int]:
        return _by_prefix(self.metrics, "handoff_reason.")

    @property
    def promises(self) -> int:
        return self.get("promises")

    @property
    def promise_yen(self) -> int:
        return self.get("promise_yen")

    @property
    def handoffs(self) -> int:
        return self.get("handoffs")

    @property
    def callbacks(self) -> int:
        return self.get("callbacks")

    @property
    def sms_sent(self) -> int:
        return self.get("sms.sent")

    @property
    def sms_delivered(self) -> int:
        return self.get("sms.delivered")

    @property
    def sms_failed(self) -> int:
        return self.get("sms.failed") + self.get("sms.undelivered")

    @property
    def letters_printed(self) -> int:
        return self.get("letters_printed")

    @property
    def phone_known_rate(self) -> float | None:
        return _ratio(self.phone_known, self.targets)

    @property
    def contact_rate(self) -> float | None:
        """Answered calls per call attempt (IVR and operator)."""
        return _ratio(self.answered, self.call_attempts)

    @property
    def rpc_rate(self) -> float | None:
        """本人接触 per answered call."""
        return _ratio(self.right_party, self.answered)

    @property
    def promise_rate(self) -> float | None:
        """Promises per 本人接触."""
        return _ratio(self.promises, self.right_party)

    def effect(self) -> Effect:
        contact = GroupFigures(
            self.get("effect.contact.persons"),
            self.get("effect.contact.paid"),
            self.get("effect.contact.paid_yen"),
        )
        holdout = GroupFigures(
            self.get("effect.holdout.persons"),
            self.get("effect.holdout.paid"),
            self.get("effect.holdout.paid_yen"),
        )
        return Effect(contact, holdout)

    def __add__(self, other: Figures) -> Figures:
        merged: Counter[str] = Counter(self.metrics)
        merged.update(other.metrics)
        return Figures(dict(merged))


@dataclass(frozen=True)
class OperatorRow:
    operator_id: int
    name: str
    calls: int
    talk_seconds: int
    results: int
    right_party: int

    @property
    def results_per_talk_hour(self) -> float | None:
        return self.results / (self.talk_seconds / 3600) if self.talk_seconds else None


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: int
    name: str
    status: str
    total: Figures
    kinds: dict[str, Figures]
    operators: list[OperatorRow]


@dataclass(frozen=True)
class Report:
    """One 日報 (a day) or 月報 (a month): per campaign, per kind, and in total."""

    period: str  # "daily" | "monthly"
    start: date
    end: date
    generated_at: datetime
    campaigns: list[CampaignReport]
    total: Figures
    kinds: dict[str, Figures]
    operators: list[OperatorRow]

    @property
    def title(self) -> str:
        if self.period == "daily":
            return f"日報 {self.start:%Y年%m月%d日}"
        return f"月報 {self.start:%Y年%m月}"

    @property
    def slug(self) -> str:
        stamp = f"{self.start:%Y%m%d}" if self.period == "daily" else f"{self.start:%Y%m}"
        return f"{self.period}_{stamp}"
