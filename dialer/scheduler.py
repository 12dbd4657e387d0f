"""Every background job, registered in one place (APScheduler 3.x).

Jobs are thin: each calls one service and logs counts (never personal data).

=====================  =========================  ==========================================
job id                 trigger                    what it does
=====================  =========================  ==========================================
``dialer.calls``       every ``tick_seconds``     dispatcher tick for IVR calls
``dialer.sms``         every 5 x ``tick_seconds`` dispatcher tick for SMS (own pacing)
``dialer.reconcile``   at start, then every 60 s  stale claims and lost calls (reconcile)
``campaigns.complete`` every 60 s                 running campaigns with nothing left
``sync.nightly``       ``settings.sync.cron``     the nightly import (function passed in)
``reports.daily``      ``report_cron``            daily aggregates/report (passed in)
=====================  =========================  ==========================================

``dunning serve`` runs these next to the web console; ``dunning worker`` runs only the dialer
jobs, so several machines can share campaigns on PostgreSQL + Redis.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from dialer import campaigns
from dialer.clock import Clock
from dialer.dispatcher import Dispatcher, DispatcherConfig
from dialer.pacing import Pacer
from dialer.planner import PlanPolicy
from dialer.ports import Carrier
from dialer.reconcile import reconcile
from dialer.sms import SmsCatalog
from kernel.calendar import TOKYO, CallingWindow
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.models import Channel
from kernel.pii import KeyRing
from kernel.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_REPORT_CRON = "30 21 * * *"  # after the calling window closes (Tokyo)
HOUSEKEEPING_SECONDS = 60.0


@dataclass(frozen=True)
class JobSpec:
    id: str
    run: Callable[[], object]
    trigger: BaseTrigger
    run_at_start: bool = False


@dataclass
class DialerRuntime:
    """The dialer of one process: call and SMS dispatchers, and what reconciliation needs."""

    database: Database
    carrier: Carrier
    clock: Clock
    window: CallingWindow
    coordination: Coordination
    policy: PlanPolicy
    calls: Dispatcher
    sms: Dispatcher
    stale_after: timedelta

    def reconcile(self) -> None:
        reconcile(
            self.database,
            self.carrier,
            self.clock,
            self.window,
            self.policy,
            stale_after=self.stale_after,
            coordination=self.coordination,
        )

    def complete_campaigns(self) -> list[int]:
        with self.database.unit_of_work() as session:
            done = campaigns.complete_finished(session)
        if done:
            log.info("campaigns completed: %s", ",".join(str(i) for i in done))
        return done


def worker_id() -> str:
    """Unique per process, readable in the attempts table (host name, short random)."""
    return f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:8]}"


def build_dialer(
    settings: Settings,
    database: Database,
    coordination: Coordination,
    keyring: KeyRing,
    carrier: Carrier,
    clock: Clock,
    sms_catalog: SmsCatalog | None,
    *,
    worker: str | None = None,
) -> DialerRuntime:
    """The dispatchers of this process, paced through the shared coordination."""
    me = worker or worker_id()
    dialer = settings.dialer
    window = CallingWindow(settings.calling_window.policy())
    hold = dialer.max_call_minutes * 60.0

    def dispatcher(suffix: str) -> Dispatcher:
        pacer = Pacer(
            coordination,
            carrier.name,
            max_concurrent_calls=dialer.max_concurrent_calls,
            calls_per_second=min(
                dialer.calls_per_second, carrier.capabilities().max_calls_per_second
            ),
            hold_seconds=hold,
        )
        config = DispatcherConfig.from_settings(settings, f"{me}{suffix}"[:64])
        return Dispatcher(
            database,
            carrier,
            clock,
            window,
            keyring,
            pacer,
            config,
            sms_catalog=sms_catalog,
            settings=settings,
        )

    calls = dispatcher("")
    return DialerRuntime(
        database=database,
        carrier=carrier,
        clock=clock,
        window=window,
        coordination=coordination,
        policy=calls.config.policy,
        calls=calls,
        sms=dispatcher("-sms"),
        stale_after=timedelta(seconds=dialer.stale_claim_seconds),
    )


def dialer_jobs(runtime: DialerRuntime, tick_seconds: float) -> list[JobSpec]:
    return [
        JobSpec(
            "dialer.calls",
            lambda: runtime.calls.tick((Channel.IVR,)),
            IntervalTrigger(seconds=tick_seconds),
        ),
        JobSpec(
            "dialer.sms",
            lambda: runtime.sms.tick((Channel.SMS,)),
            IntervalTrigger(seconds=max(5.0, tick_seconds * 5)),
        ),
        JobSpec(
            "dialer.reconcile",
            runtime.reconcile,
            IntervalTrigger(seconds=HOUSEKEEPING_SECONDS),
            run_at_start=True,
        ),
        JobSpec(
            "campaigns.complete",
            runtime.complete_campaigns,
            IntervalTrigger(seconds=HOUSEKEEPING_SECONDS),
        ),
    ]


def platform_jobs(
    sync_cron: str,
    nightly_sync: Callable[[], object] | None,
    daily_report: Callable[[], object] | None,
    report_cron: str = DEFAULT_REPORT_CRON,
) -> list[JobSpec]:
    """The nightly import and the daily report, run by ``dunning serve`` only."""
    jobs = []
    if nightly_sync is not None:
        jobs.append(JobSpec("sync.nightly", nightly_sync, cron(sync_cron)))
    if daily_report is not None:
        jobs.append(JobSpec("reports.daily", daily_report, cron(report_cron)))
    return jobs


def cron(expression: str) -> CronTrigger:
    """A five-field crontab expression, read in Tokyo time."""
    return CronTrigger.from_crontab(expression, timezone=TOKYO)


def build_scheduler(jobs: Iterable[JobSpec], *, now: datetime | None = None) -> BackgroundScheduler:
    """A background scheduler with every job registered (not started)."""
    scheduler = BackgroundScheduler(
        timezone=TOKYO,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
    )
    for job in jobs:
        options: dict[str, object] = {}
        if job.run_at_start:
            options["next_run_time"] = now or datetime.now(TOKYO)
        scheduler.add_job(_logged(job), job.trigger, id=job.id, name=job.id, **options)
    return scheduler


def _logged(job: JobSpec) -> Callable[[], None]:
    def run() -> None:
        try:
            job.run()
        except Exception:  # logged with the job id; the next run tries again
            log.exception("job %s failed", job.id)

    return run
