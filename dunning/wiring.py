"""The one place where settings turn into adapters (database, coordination, calendar, keys)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent_console.context import ConsoleContext
from dialer.call_session import CallSession
from dialer.carriers.asterisk import build_asterisk
from dialer.carriers.twilio import TwilioCarrier
from dialer.clock import Clock, SystemClock
from dialer.ports import Carrier
from dialer.simulator import SimulatedCarrier
from dialer.sms import SmsCatalog, load_catalog
from kernel.calendar import CallingWindow
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import Database
from kernel.pii import KeyRing
from kernel.redis_coordination import RedisCoordination
from kernel.settings import Settings, get_settings


@dataclass
class Services:
    """Everything a command, the web app or a worker needs, built once from settings."""

    settings: Settings
    database: Database
    coordination: Coordination
    calling_window: CallingWindow
    keyring: KeyRing

    def close(self) -> None:
        self.coordination.close()
        self.database.dispose()


CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def connect_coordination(redis_url: str | None, namespace: str = "dunning") -> Coordination:
    """Redis when a URL is configured, otherwise the in-process implementation."""
    if redis_url:
        return RedisCoordination(redis_url, namespace)
    return LocalCoordination()


def sms_catalog(settings: Settings) -> SmsCatalog:
    """The SMS templates (config/sms_templates.toml), checked against the municipality."""
    return load_catalog(CONFIG_DIR / "sms_templates.toml", settings.municipality)


def build_services(settings: Settings) -> Services:
    return Services(
        settings=settings,
        database=Database(settings.database_url),
        coordination=connect_coordination(settings.redis_url),
        calling_window=CallingWindow(settings.calling_window.policy()),
        keyring=KeyRing(settings.data_key_secret.get_secret_value()),
    )


def console_context(services: Services, telephony: Telephony | None = None) -> ConsoleContext:
    """The console's view of the services; with ``telephony``, click-to-call and its clock."""
    return ConsoleContext(
        settings=services.settings,
        database=services.database,
        coordination=services.coordination,
        keyring=services.keyring,
        calling_window=services.calling_window,
        carrier=telephony.carrier if telephony else None,
        clock=telephony.clock if telephony else SystemClock(),
    )


def configure_logging(level: str) -> None:
    """Plain structured-ish lines; messages must never carry personal values."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # APScheduler reports every run of every job at INFO: once a second for the dialer tick.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))


@dataclass
class Telephony:
    """The configured carrier, the call session it reports to, and the clock they share."""

    clock: Clock
    call_session: CallSession
    carrier: Carrier
    _close: Callable[[], None]

    def close(self) -> None:
        self._close()


def build_telephony(services: Services, clock: Clock | None = None) -> Telephony:
    """Start the carrier chosen by ``settings.carrier`` (simulator, twilio or asterisk)."""
    settings = services.settings
    chosen_clock = clock or SystemClock()
    session = CallSession(
        services.database,
        services.coordination,
        services.keyring,
        settings,
        clock=chosen_clock,
    )
    if settings.carrier == "twilio":
        twilio = TwilioCarrier(settings)
        return Telephony(chosen_clock, session, twilio, lambda: None)
    if settings.carrier == "asterisk":
        stack = build_asterisk(settings, session, services.database).start()
        return Telephony(chosen_clock, session, stack.carrier, stack.close)
    simulated = SimulatedCarrier.from_settings(session, settings.simulator, chosen_clock)
    simulated.start()
    return Telephony(chosen_clock, session, simulated, simulated.stop)


@contextmanager
def open_services(settings: Settings | None = None) -> Iterator[Services]:
    """The services of one CLI command, closed when it ends (logging configured first)."""
    chosen = settings or get_settings()
    configure_logging(chosen.log_level)
    services = build_services(chosen)
    try:
        yield services
    finally:
        services.close()
