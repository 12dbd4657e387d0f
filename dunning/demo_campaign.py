"""The demo's campaign run: the dispatcher, the IVR flow and the simulator on a simulated clock.

Simulated time starts at the first opening of the calling window on the Monday three weeks
before today (so every simulated instant lies in the past, as the exclusion list and the
audit trail expect) and jumps from one event to the next: a minute at a time while calls
are live, straight to the next due attempt or carrier event otherwise. Every simulated night
the exclusion list is refreshed, as the nightly sync would do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

import ivr_scripts.actions as act
from dialer import campaigns
from dialer.call_session import CallSession
from dialer.clock import SimulatedClock
from dialer.ports import CallEvent, CallEventSink, InboundSms, SmsStatusEvent
from dialer.scheduler import DialerRuntime, build_dialer
from dialer.simulator import SimulatedCarrier
from dunning.wiring import sms_catalog
from kernel.calendar import TOKYO
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, Channel
from kernel.pii import KeyRing
from kernel.settings import Settings
from sync.exclusions import load_exclusions

LIVE_STEP = timedelta(minutes=1)
IDLE_STEP = timedelta(hours=1)
EXCLUSION_REFRESH = timedelta(hours=20)


def simulation_start(today: date, runtime_window_open: Callable[[datetime], datetime]) -> datetime:
    """The first window opening on or after the Monday three weeks before ``today``.

    With at most 20 simulated days the run ends before today: the exclusion list's as-of
    time, like every audit timestamp, must never lie in the real future.
    """
    monday = today - timedelta(days=today.weekday() + 21)
    return runtime_window_open(datetime.combine(monday, datetime.min.time(), TOKYO))


@dataclass
class CallLine:
    speaker: str  # "IVR" or "住民"
    text: str


@dataclass
class RecordedCall:
    lines: list[CallLine] = field(default_factory=list)
    outcome: str | None = None


class TranscriptRecorder:
    """A CallEventSink wrapper that writes down the first ``keep`` answered calls.

    Transcripts are printed on the demo's console only (synthetic residents); they never go
    to a log. Everything is passed through to the real call session unchanged.
    """

    def __init__(self, inner: CallEventSink, keep: int = 3) -> None:
        self.inner = inner
        self.keep = keep
        self.calls: dict[str, RecordedCall] = {}

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        actions = self.inner.on_call_event(event)
        call = self.calls.get(event.carrier_ref)
        if call is None and actions and len(self.calls) < self.keep:
            call = self.calls.setdefault(event.carrier_ref, RecordedCall())
        if call is not None:
            _write_down(call, event, actions)
        return actions

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self.inner.on_sms_status(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        self.inner.on_inbound_sms(message)


def _write_down(call: RecordedCall, event: CallEvent, actions: list[act.Action]) -> None:
    if event.digits:
        call.lines.append(CallLine("住民", f"[{event.digits}] を押す"))
    elif event.speech:
        call.lines.append(CallLine("住民", f"「{event.speech}」"))
    elif event.no_input:
        call.lines.append(CallLine("住民", "(無言)"))
    elif event.status is not None and event.status.is_final and call.outcome is None:
        call.lines.append(CallLine("住民", "(電話を切る)"))
    for action in actions:
        if isinstance(action, act.Say):
            call.lines.append(CallLine("IVR", action.text))
        elif isinstance(action, act.RecordOutcome):
            call.outcome = action.code.value


@dataclass
class SimulationResult:
    started: datetime
    finished: datetime
    completed: bool
    calls_by_day: dict[date, int]
    outcomes: Counter[str]
    transcripts: list[RecordedCall]


class DemoCampaignRun:
    """Wires the simulator, the call session and the dialer on one simulated clock."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        coordination: Coordination,
        keyring: KeyRing,
        clock: SimulatedClock,
        exclusion_file: Path,
        keep_transcripts: int = 3,
    ) -> None:
        self.settings = settings
        self.database = database
        self.keyring = keyring
        self.clock = clock
        self.exclusion_file = exclusion_file
        session = CallSession(database, coordination, keyring, settings, clock=clock)
        self.recorder = TranscriptRecorder(session, keep=keep_transcripts)
        self.carrier = SimulatedCarrier(self.recorder, clock=clock, seed=settings.simulator.seed)
        self.runtime: DialerRuntime = build_dialer(
            settings, database, coordination, keyring, self.carrier, clock, sms_catalog(settings)
        )

    def refresh_exclusions(self) -> None:
        """What the nightly sync does: a fresh 除外者リスト (a few unrelated 宛名番号)."""
        as_of = self.clock.now() - timedelta(minutes=30)
        self.exclusion_file.parent.mkdir(parents=True, exist_ok=True)
        self.exclusion_file.write_text(
            f"# 基準日時: {as_of.astimezone(TOKYO).isoformat()}\n宛名番号,理由\n"
            "99990001,支援措置\n99990002,死亡\n",
            encoding="cp932",
        )
        load_exclusions(self.database, self.keyring, self.exclusion_file, actor="demo")

    def run(
        self,
        campaign_id: int,
        max_days: int,
        on_new_day: Callable[[date], None] | None = None,
    ) -> SimulationResult:
        """Dial until the campaign completes or ``max_days`` pass; ``on_new_day`` shows progress."""
        started = self.clock.now()
        end = started + timedelta(days=max_days)
        refreshed_at: datetime | None = None
        completed = False
        day = started.astimezone(TOKYO).date()
        while self.clock.now() < end and not completed:
            today = self.clock.now().astimezone(TOKYO).date()
            if today != day and on_new_day is not None:
                on_new_day(day)
            day = today
            if refreshed_at is None or self.clock.now() - refreshed_at > EXCLUSION_REFRESH:
                self.refresh_exclusions()
                refreshed_at = self.clock.now()
            self.runtime.calls.tick((Channel.IVR,))
            self.runtime.sms.tick((Channel.SMS,))
            self.carrier.run_until(self.clock.now())
            with self.database.unit_of_work() as session:
                completed = campaign_id in campaigns.complete_finished(session, "demo")
            self.clock.advance(self._step())
        return self._result(campaign_id, started, completed)

    def _step(self) -> timedelta:
        if self.carrier.active_calls():
            return LIVE_STEP
        upcoming = [t for t in (self._next_attempt_due(), self.carrier.next_due()) if t]
        if not upcoming:
            return IDLE_STEP
        return max(LIVE_STEP, min(upcoming) - self.clock.now())

    def _next_attempt_due(self) -> datetime | None:
        with self.database.read_only() as session:
            return session.scalar(
                select(func.min(Attempt.scheduled_at)).where(
                    Attempt.status == AttemptStatus.SCHEDULED,
                    Attempt.channel.in_((Channel.IVR, Channel.SMS)),
                )
            )

    def _result(self, campaign_id: int, started: datetime, completed: bool) -> SimulationResult:
        with self.database.read_only() as session:
            attempts = session.scalars(
                select(Attempt).where(Attempt.campaign_id == campaign_id)
            ).all()
            by_day: Counter[date] = Counter(
                a.started_at.astimezone(TOKYO).date()
                for a in attempts
                if a.started_at is not None and a.channel is Channel.IVR
            )
            outcomes: Counter[str] = Counter(
                a.outcome_code or a.carrier_result or a.refusal_reason or a.status.value
                for a in attempts
            )
        return SimulationResult(
            started=started,
            finished=self.clock.now(),
            completed=completed,
            calls_by_day=dict(sorted(by_day.items())),
            outcomes=outcomes,
            transcripts=list(self.recorder.calls.values()),
        )
