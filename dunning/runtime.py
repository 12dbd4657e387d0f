"""The long-running processes: ``dunning serve`` (web + every job) and ``dunning worker``.

Both build the carrier from settings, the dialer of this process, and one APScheduler with
the jobs of :mod:`dialer.scheduler`; ``serve`` adds the nightly sync, the daily report and
the automatic wipe, which must run once per installation rather than once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from fastapi import FastAPI

from agent_console.app import create_console
from dialer.carriers.twilio import TwilioCarrier
from dialer.carriers.twilio_webhooks import twilio_router
from dialer.scheduler import (
    DialerRuntime,
    JobSpec,
    build_dialer,
    build_scheduler,
    cron,
    dialer_jobs,
    platform_jobs,
)
from dialer.wipe import wipe_due_campaigns
from dunning.wiring import Services, Telephony, build_telephony, console_context, sms_catalog
from kernel.calendar import TOKYO
from kernel.collector import freeze_startup_objects
from reports.scheduled import write_daily_reports
from sync.sources import run_configured_sources

log = logging.getLogger(__name__)


@dataclass
class ProcessRuntime:
    """What one process runs besides (or instead of) the web console."""

    services: Services
    telephony: Telephony
    dialer: DialerRuntime
    scheduler: BackgroundScheduler

    def start(self) -> None:
        self.scheduler.start()
        log.info("scheduler started: %s", ", ".join(j.id for j in self.scheduler.get_jobs()))

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)
        self.telephony.close()


def build_runtime(
    services: Services, *, platform: bool, worker: str | None = None
) -> ProcessRuntime:
    """The dialer of this process; with ``platform`` also the once-per-installation jobs."""
    telephony = build_telephony(services)
    settings = services.settings
    dialer = build_dialer(
        settings,
        services.database,
        services.coordination,
        services.keyring,
        telephony.carrier,
        telephony.clock,
        sms_catalog(settings),
        worker=worker,
    )
    jobs = dialer_jobs(dialer, settings.dialer.tick_seconds)
    if platform:
        jobs += _platform_jobs(services)
    return ProcessRuntime(services, telephony, dialer, build_scheduler(jobs))


def _platform_jobs(services: Services) -> list[JobSpec]:
    settings = services.settings

    def nightly_sync() -> object:
        return run_configured_sources(
            services.database,
            services.keyring,
            settings.sync,
            actor="scheduler",
            rejects_dir=settings.var_dir / "rejects",
        )

    def daily_report() -> object:
        return write_daily_reports(services.database, settings)

    def auto_wipe() -> object:
        return wipe_due_campaigns(
            services.database,
            services.coordination,
            settings.var_dir,
            settings.wipe,
            datetime.now(TOKYO),
        )

    hour, minute = settings.reports.daily_time.split(":")
    jobs = platform_jobs(
        settings.sync.cron,
        nightly_sync if settings.sync.sources else None,
        daily_report,
        report_cron=f"{int(minute)} {int(hour)} * * *",
    )
    if settings.wipe.auto_wipe_after_export:
        jobs.append(JobSpec("wipe.auto", auto_wipe, cron(settings.wipe.cron)))
    return jobs


def create_web_app(services: Services, *, with_runtime: bool = True) -> FastAPI:
    """The console (+ Twilio webhooks when Twilio is the carrier) and this process's jobs."""
    if not with_runtime:
        app = create_console(console_context(services))
        app.state.services = services
        return app
    runtime = build_runtime(services, platform=True)
    webhooks = []
    if services.settings.carrier == "twilio":
        carrier = runtime.telephony.carrier
        live_calls = carrier if isinstance(carrier, TwilioCarrier) else None
        session = runtime.telephony.call_session
        webhooks.append(twilio_router(session, services.settings, live_calls=live_calls))
    app = create_console(console_context(services, runtime.telephony), first=webhooks)
    app.state.services = services
    app.state.runtime = runtime
    app.router.lifespan_context = _lifespan(runtime)
    return app


def _lifespan(runtime: ProcessRuntime) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        freeze_startup_objects()
        runtime.start()
        log.info("started at %s (Asia/Tokyo)", datetime.now(TOKYO).isoformat(timespec="seconds"))
        try:
            yield
        finally:
            runtime.stop()
            runtime.services.close()

    return lifespan
