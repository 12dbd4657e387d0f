"""A small dialer world for tests: a migrated database with a running campaign of synthetic
targets (sealed like the loader seals them), an exclusion list, a simulated clock, the
in-process coordination and a scripted carrier. Numbers are fictitious (090-0000-xxxx)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dialer import campaigns
from dialer.clock import SimulatedClock
from dialer.dispatcher import Dispatcher, DispatcherConfig
from dialer.pacing import Pacer
from dialer.ports import Carrier
from dialer.sms import SmsCatalog, load_catalog
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import Database
from kernel.models import (
    Campaign,
    CampaignStatus,
    Channel,
    ExclusionEntry,
    ExclusionList,
    Person,
    Phone,
    PhoneKind,
    TargetStatus,
)
from kernel.pii import KeyRing
from kernel.settings import PROJECT_ROOT, Settings, load_settings
from tests.fakes.fake_carrier import FakeCarrier

#: Monday 2026-12-07 10:00 in Tokyo: a working day, inside the default window.
MONDAY_10 = datetime(2026, 12, 7, 10, 0, tzinfo=TOKYO)
SECRET = "test-secret-" + "x" * 40
_numbers = itertools.count(1000)


def new_number(kind: PhoneKind = PhoneKind.MOBILE) -> str:
    prefix = "+8190" if kind is PhoneKind.MOBILE else "+813"
    return f"{prefix}0000{next(_numbers):04d}"


@dataclass
class Target:
    numbers: list[tuple[str, PhoneKind]] = field(
        default_factory=lambda: [(new_number(), PhoneKind.MOBILE)]
    )
    status: TargetStatus = TargetStatus.ACTIVE
    channel: Channel = Channel.IVR


@dataclass
class World:
    database: Database
    clock: SimulatedClock = field(default_factory=lambda: SimulatedClock(MONDAY_10))
    keyring: KeyRing = field(default_factory=lambda: KeyRing(SECRET))
    window: CallingWindow = field(default_factory=lambda: CallingWindow(CallingPolicy.default()))
    coordination: Coordination = field(default_factory=LocalCoordination)
    carrier: Carrier | None = None
    _refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.carrier is None:
            self.carrier = FakeCarrier(self.clock)

    @property
    def fake(self) -> FakeCarrier:
        assert isinstance(self.carrier, FakeCarrier)
        return self.carrier

    @property
    def settings(self) -> Settings:
        return load_settings(environment="demo")

    def sms_catalog(self) -> SmsCatalog:
        return load_catalog(
            PROJECT_ROOT / "config" / "sms_templates.toml", self.settings.municipality
        )

    def campaign(self, targets: list[Target], *, running: bool = True) -> int:
        """A campaign with these targets, readied (first attempts planned) and started."""
        with self.database.unit_of_work() as session:
            campaign = Campaign(name="テスト催告", created_by="test")
            session.add(campaign)
            session.flush()
            campaign.wrapped_data_key = self.keyring.new_wrapped_data_key(campaign.id)
            cipher = self.keyring.cipher(campaign.wrapped_data_key, campaign.id)
            for target in targets:
                ref = self.keyring.digest("person", f"P{next(self._refs):09d}")
                person = Person(
                    campaign_id=campaign.id,
                    ref_digest=ref,
                    sealed_pii=cipher.seal_record({"name_kana": "テスト"}, "pii"),
                    channel=target.channel,
                    status=target.status,
                )
                session.add(person)
                session.flush()
                for position, (number, kind) in enumerate(target.numbers, start=1):
                    session.add(
                        Phone(
                            person_id=person.id,
                            campaign_id=campaign.id,
                            position=position,
                            sealed_number=cipher.seal_text(number, "phone"),
                            number_digest=self.keyring.digest("phone", number),
                            kind=kind,
                        )
                    )
            campaign_id = campaign.id
        with self.database.unit_of_work() as session:
            campaigns.prepare(session, campaign_id, self.window, self.clock.now(), "test")
            if running:
                campaigns.move(session, campaign_id, CampaignStatus.RUNNING, "test")
        return campaign_id

    def exclusion_list(self, as_of: datetime | None = None, refs: tuple[str, ...] = ()) -> int:
        with self.database.unit_of_work() as session:
            for old in session.query(ExclusionList).filter(ExclusionList.active.is_(True)):
                old.active = False
            listed = ExclusionList(
                as_of=as_of or self.clock.now() - timedelta(hours=1),
                entry_count=len(refs),
                file_sha256="0" * 64,
            )
            session.add(listed)
            session.flush()
            for ref in refs:
                session.add(ExclusionEntry(list_id=listed.id, ref_digest=ref, reason="dv"))
            return listed.id

    def pacer(self, **overrides: Any) -> Pacer:
        options: dict[str, Any] = {
            "max_concurrent_calls": 30,
            "calls_per_second": 1000.0,
            "hold_seconds": 1800.0,
            "sms_per_second": 1000.0,
        }
        options.update(overrides)
        assert self.carrier is not None
        return Pacer(self.coordination, self.carrier.name, **options)

    def dispatcher(
        self, worker_id: str = "w1", pacer: Pacer | None = None, **config: Any
    ) -> Dispatcher:
        assert self.carrier is not None
        return Dispatcher(
            self.database,
            self.carrier,
            self.clock,
            self.window,
            self.keyring,
            pacer or self.pacer(),
            DispatcherConfig(worker_id=worker_id, **config),
            sms_catalog=self.sms_catalog(),
            settings=self.settings,
        )

    def now_utc(self) -> datetime:
        return self.clock.now().astimezone(UTC)


def finish_call(
    world: World, attempt_id: int, *, outcome: str | None = None, result: str = "completed"
) -> None:
    """What the call session does when a call ends: completed, counted, carrier call over."""
    from kernel.aggregates import record_attempt_result
    from kernel.models import Attempt, AttemptStatus

    with world.database.unit_of_work() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None
        attempt.status = AttemptStatus.COMPLETED
        attempt.outcome_code = outcome
        attempt.carrier_result = result
        attempt.ended_at = world.clock.now()
        session.flush()
        record_attempt_result(session, attempt)
        ref = attempt.carrier_ref
    if ref is not None and isinstance(world.carrier, FakeCarrier):
        world.carrier.finish(ref)


class SwitchableCoordination:
    """The in-process coordination, with a switch that makes it behave as an unreachable
    Redis does: every call raises ``CoordinationUnavailable`` (``ping`` answers False)."""

    def __init__(self) -> None:
        self.inner = LocalCoordination()
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name == "ping":
            return lambda: not self.down and attribute()
        if not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                from kernel.coordination import CoordinationUnavailable

                raise CoordinationUnavailable("redis is not reachable (test switch)")
            return attribute(*args, **kwargs)

        return guarded
