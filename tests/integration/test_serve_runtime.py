"""``dunning serve`` wiring: the console, the carrier from settings and the scheduled jobs."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from dialer.carriers.webhook_app import WebhooksFirst
from dunning.runtime import build_runtime, create_web_app
from dunning.wiring import build_services
from kernel import migrate
from kernel.settings import Settings, load_settings


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        environment="demo",
        database_url=f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        redis_url=None,
        var_dir=tmp_path / "var",
        **overrides,
    )


def test_serve_runs_the_console_and_every_job_on_the_simulator(tmp_path: Path) -> None:
    services = build_services(_settings(tmp_path))
    migrate.upgrade(services.database)
    app = create_web_app(services)
    gc.unfreeze()
    try:
        with TestClient(app) as client:
            assert gc.get_freeze_count() > 0  # start-up objects out of the collector's way
            assert client.get("/login").status_code == 200
            assert client.post("/twilio/status", data={"CallSid": "CA1"}).status_code == 404
            jobs = {job.id for job in app.state.runtime.scheduler.get_jobs()}
    finally:
        gc.unfreeze()
    assert {"dialer.calls", "dialer.sms", "dialer.reconcile", "campaigns.complete"} <= jobs
    assert {"reports.daily", "wipe.auto"} <= jobs
    assert app.state.runtime.telephony.carrier.name == "simulator"


def test_serve_mounts_the_signed_twilio_webhooks_when_twilio_is_the_carrier(
    tmp_path: Path,
) -> None:
    settings = _settings(
        tmp_path,
        carrier="twilio",
        twilio={
            "account_sid": "AC" + "0" * 32,
            "auth_token": "t" * 32,
            "from_number": "+81312345678",
        },
    )
    services = build_services(settings)
    migrate.upgrade(services.database)
    app = create_web_app(services)
    with TestClient(app) as client:
        unsigned = client.post("/twilio/status", data={"CallSid": "CA" + "1" * 32})
        console = client.get("/healthz")
    assert unsigned.status_code == 403  # mounted, and it checks X-Twilio-Signature
    # served ahead of the console's middleware: no console headers on the webhook's answer
    assert "content-security-policy" in console.headers
    assert "content-security-policy" not in unsigned.headers
    assert isinstance(app, WebhooksFirst)
    assert {"/twilio/voice", "/twilio/status", "/twilio/amd"} <= app.webhook_paths


def test_a_worker_runs_only_the_dialer_jobs(tmp_path: Path) -> None:
    services = build_services(_settings(tmp_path))
    migrate.upgrade(services.database)
    runtime = build_runtime(services, platform=False, worker="w1")
    try:
        jobs = {job.id for job in runtime.scheduler.get_jobs()}
    finally:
        runtime.telephony.close()
        services.close()
    assert jobs == {"dialer.calls", "dialer.sms", "dialer.reconcile", "campaigns.complete"}
