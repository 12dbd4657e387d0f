"""The jobs are registered in one place and the worker's scheduler really dials."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from apscheduler.triggers.cron import CronTrigger

from dialer.scheduler import build_dialer, build_scheduler, dialer_jobs, platform_jobs
from kernel.db import Database
from tests.fakes.dialer_world import Target, World


@pytest.fixture
def world(database: Database) -> World:
    built = World(database)
    built.exclusion_list()
    return built


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def runtime(world: World):  # type: ignore[no-untyped-def]
    return build_dialer(
        world.settings,
        world.database,
        world.coordination,
        world.keyring,
        world.fake,
        world.clock,
        world.sms_catalog(),
        worker="test-worker",
    )


def test_every_job_is_registered_with_its_trigger(world: World) -> None:
    ran: list[str] = []
    jobs = dialer_jobs(runtime(world), tick_seconds=1.0) + platform_jobs(
        "0 2 * * *", lambda: ran.append("sync"), lambda: ran.append("report")
    )
    scheduler = build_scheduler(jobs)
    ids = {job.id for job in scheduler.get_jobs()}
    assert ids == {
        "dialer.calls",
        "dialer.sms",
        "dialer.reconcile",
        "campaigns.complete",
        "sync.nightly",
        "reports.daily",
    }
    nightly = scheduler.get_job("sync.nightly").trigger
    assert isinstance(nightly, CronTrigger) and str(nightly.timezone) == "Asia/Tokyo"
    assert "hour='2'" in str(nightly)


def test_platform_jobs_are_optional() -> None:
    assert platform_jobs("0 2 * * *", None, None) == []


def test_the_worker_scheduler_places_the_due_calls(world: World) -> None:
    world.campaign([Target() for _ in range(3)])
    dialer = runtime(world)
    scheduler = build_scheduler(dialer_jobs(dialer, tick_seconds=0.05))
    scheduler.start()
    try:
        assert wait_for(lambda: len(world.fake.calls) == 3)
    finally:
        scheduler.shutdown(wait=True)
    assert len(world.fake.calls) == 3
    assert dialer.calls.config.worker_id == "test-worker"
