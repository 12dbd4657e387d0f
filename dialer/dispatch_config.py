"""The dispatcher's configuration (from settings) and the counts one tick reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from dialer import campaigns
from dialer.interlocks import Caps
from dialer.planner import PlanPolicy
from kernel.settings import Settings


@dataclass(frozen=True)
class DispatcherConfig:
    worker_id: str
    claim_batch: int = 50
    ring_timeout_seconds: int = 30
    caller_id: str = "+81312345678"
    sms_sender_id: str = "CITY"
    sms_template: str = "reminder"
    exclusion_max_age: timedelta = timedelta(hours=24)
    carrier_error_backoff: timedelta = timedelta(seconds=60)
    max_dispatch_errors: int = 5
    household_retry: timedelta = timedelta(minutes=10)
    check_chunk: int = 20
    caps: Caps = field(default_factory=Caps)
    policy: PlanPolicy = field(default_factory=PlanPolicy)

    @classmethod
    def from_settings(cls, settings: Settings, worker_id: str) -> DispatcherConfig:
        dialer = settings.dialer
        return cls(
            worker_id=worker_id,
            claim_batch=dialer.claim_batch,
            ring_timeout_seconds=dialer.ring_timeout_seconds,
            caller_id=settings.municipality.caller_id,
            sms_sender_id=settings.municipality.sms_sender_id,
            sms_template=dialer.sms_template,
            exclusion_max_age=timedelta(hours=settings.sync.exclusion_max_age_hours),
            carrier_error_backoff=timedelta(seconds=dialer.carrier_error_backoff_seconds),
            max_dispatch_errors=dialer.max_dispatch_errors,
            household_retry=timedelta(minutes=dialer.household_lock_retry_minutes),
            check_chunk=dialer.check_chunk,
            caps=Caps(dialer.max_attempts_per_day, dialer.max_attempts_per_week),
            policy=campaigns.plan_policy(dialer),
        )


@dataclass
class TickReport:
    """Counts only (no personal data): what one tick did."""

    claimed: int = 0
    placed: int = 0
    sms_sent: int = 0
    postponed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    carrier_errors: int = 0
    follow_ups: int = 0
    released: int = 0
    handed_back: int = 0
    stopped: str | None = None

    def as_log(self) -> str:
        refused = ",".join(f"{k}={v}" for k, v in sorted(self.refused.items())) or "-"
        postponed = ",".join(f"{k}={v}" for k, v in sorted(self.postponed.items())) or "-"
        return (
            f"claimed={self.claimed} placed={self.placed} sms={self.sms_sent} "
            f"refused[{refused}] postponed[{postponed}] carrier_errors={self.carrier_errors} "
            f"follow_ups={self.follow_ups} handed_back={self.handed_back} "
            f"stopped={self.stopped or '-'}"
        )


def retryable(code: str | None) -> bool:
    """5xx, 429 and timeouts are worth retrying; other refusals will not change."""
    if code is None:
        return True
    return code == "429" or code == "timeout" or code.startswith("5")
