"""The console in a real browser (Debian's Chromium driven by Playwright).

A uvicorn server on a free loopback port serves the console over a migrated SQLite database
holding a synthetic import. An operator signs in, takes a target, confirms identity, records a
promise and hands the case to staff, while the supervisor's dashboard (server-sent events)
updates without a reload. Screenshots go to ``test-artifacts/``.

Runs wherever ``/usr/bin/chromium`` exists (CI installs it); elsewhere it is skipped with the
reason shown, except under CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kernel import migrate
from kernel.db import Database
from kernel.models import Role
from tests.e2e.world import ACCOUNTS, PASSWORD, build_world, console_app

CHROMIUM = Path(os.environ.get("DUNNING_CHROMIUM", "/usr/bin/chromium"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}

pytestmark = pytest.mark.e2e


def _require_browser() -> Any:
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the browser tests")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        if IN_CI:
            pytest.fail("playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def console_url(tmp_path: Path) -> Iterator[str]:
    database = Database(f"sqlite:///{tmp_path / 'e2e.sqlite3'}")
    migrate.upgrade(database)
    build_world(database, tmp_path, persons=12)
    port = _free_port()
    config = uvicorn.Config(
        console_app(database),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    database.dispose()


def _sign_in(page: Any, base: str, role: Role) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", ACCOUNTS[role])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_operator_promise_and_hand_off_update_the_live_dashboard(console_url: str) -> None:
    sync_playwright = _require_browser()
    from playwright.sync_api import expect

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            supervisor = browser.new_context(viewport=VIEWPORT).new_page()
            _sign_in(supervisor, console_url, Role.SUPERVISOR)
            supervisor.wait_for_url("**/supervisor")
            supervisor.wait_for_selector("#live-status.ok")  # the event stream is connected
            supervisor.evaluate("window.__notReloaded = true")
            promises = supervisor.locator('[data-live="today.promise"]')
            assert promises.inner_text() == "0"
            _shot(supervisor, "1-dashboard-before")

            operator = browser.new_context(viewport=VIEWPORT).new_page()
            _operator_records_a_promise(operator, console_url)

            expect(promises).to_have_text("1", timeout=15_000)  # no reload: the stream did it
            assert supervisor.evaluate("window.__notReloaded") is True
            assert supervisor.locator('[data-live="queues.handoffs_open"]').inner_text() == "1"
            assert supervisor.locator('[data-live="today.handoffs"]').inner_text() == "1"
            _shot(supervisor, "5-dashboard-after")

            staff = browser.new_context(viewport=VIEWPORT).new_page()
            _sign_in(staff, console_url, Role.STAFF)
            staff.wait_for_url("**/staff")
            staff.click("#handoffs a")
            assert "分納を希望" in staff.inner_text("#operator-notes")
            _shot(staff, "6-staff-handoff")
        finally:
            browser.close()


def _operator_records_a_promise(page: Any, base: str) -> None:
    _sign_in(page, base, Role.OPERATOR)
    page.wait_for_url("**/operator")
    page.click("#next-target")
    page.wait_for_url("**/operator/calls/*")
    assert page.locator("#receivables").count() == 0  # nothing disclosed before the check
    assert page.inner_text("#person-name").strip()
    _shot(page, "2-call-screen")
    page.check("#identity-check")
    page.click("#identity-submit")
    page.wait_for_selector("#receivables")
    _shot(page, "3-identity-confirmed")
    page.select_option("#result_code", "promise")
    page.fill("#promise_date", "2026-12-10")
    page.fill("#promise_amount", "12000")
    page.select_option("#payment_method", "slip")
    page.select_option("#handoff_reason", "installment")
    page.fill("#notes", "分納を希望。詳細は職員から連絡。")
    _shot(page, "4-form-filled")
    page.keyboard.press("Control+Enter")  # the form's keyboard shortcut
    page.wait_for_url("**/operator?saved=1")
