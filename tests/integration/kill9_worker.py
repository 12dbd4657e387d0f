"""A dialer process for the kill -9 test: ``python -m tests.integration.kill9_worker URL DIR``.

It dials through :class:`LedgerCarrier`, whose record of placed calls is a file fsynced before
``place_call`` returns, as a real carrier's would outlive the dialer. Simulated time runs two
minutes per real second and continues from the last instant a previous (killed) process
reached. Calls ring out unanswered after three simulated minutes. Every loop does what
``dunning worker`` does: reconciliation, then a dispatcher tick.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from dialer.clock import Clock, SimulatedClock
from dialer.ports import CallHandle, CallRequest, Capabilities, SmsHandle, SmsRequest
from dialer.reconcile import reconcile
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus
from tests.fakes.dialer_world import MONDAY_10, World, finish_call

RING_OUT = timedelta(minutes=3)
SPEEDUP = 120.0


@dataclass
class LedgerCarrier:
    ledger: Path
    clock: Clock
    name: str = "ledger"

    def capabilities(self) -> Capabilities:
        return Capabilities(True, False, False, False, False, 1000.0)

    def place_call(self, request: CallRequest) -> CallHandle:
        entry = {"key": request.idempotency_key, "to": request.to_e164, "at": _iso(self.clock)}
        with self.ledger.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return CallHandle(True, self.name, carrier_ref="L-" + request.idempotency_key)

    def hang_up(self, carrier_ref: str) -> None:
        del carrier_ref

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        return SmsHandle(False, self.name, error_code="unsupported")

    def active_calls(self) -> list[str]:
        now = self.clock.now()
        return ["L-" + e.key for e in read_ledger(self.ledger) if now - e.at < RING_OUT]


@dataclass(frozen=True)
class Placed:
    key: str
    to: str
    at: datetime


def read_ledger(path: Path) -> list[Placed]:
    """Every call the carrier accepted (a line cut short by a kill was never acknowledged)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        entries.append(Placed(raw["key"], raw["to"], datetime.fromisoformat(raw["at"])))
    return entries


def _iso(clock: Clock) -> str:
    return clock.now().isoformat()


def _resume_at(folder: Path) -> datetime:
    mark = folder / "clock"
    return datetime.fromisoformat(mark.read_text()) if mark.exists() else MONDAY_10


def _save_clock(folder: Path, clock: Clock) -> None:
    """Atomically (a kill may land mid-write): where the next process resumes."""
    scratch = folder / "clock.tmp"
    scratch.write_text(clock.now().isoformat())
    os.replace(scratch, folder / "clock")


def ring_out(world: World, carrier: LedgerCarrier) -> None:
    """Calls the carrier ended (rang out) are finished as the call session would finish them."""
    active = set(carrier.active_calls())
    with world.database.read_only() as session:
        ended = session.scalars(
            select(Attempt.id).where(
                Attempt.status == AttemptStatus.IN_PROGRESS, Attempt.carrier_ref.is_not(None)
            )
        ).all()
        refs = dict(session.execute(select(Attempt.id, Attempt.carrier_ref)).tuples().all())
    for attempt_id in ended:
        if refs[attempt_id] not in active:
            finish_call(world, attempt_id, result="no-answer")


def main(url: str, folder: Path) -> None:
    clock = SimulatedClock(_resume_at(folder) + timedelta(minutes=1), speedup=SPEEDUP)
    carrier = LedgerCarrier(folder / "ledger.jsonl", clock)
    world = World(Database(url), clock=clock, carrier=carrier)
    dispatcher = world.dispatcher(f"w{os.getpid()}", check_chunk=1)
    while True:
        reconcile(
            world.database, carrier, clock, world.window, dispatcher.config.policy,
            stale_after=timedelta(minutes=2), coordination=world.coordination,
        )  # fmt: skip
        ring_out(world, carrier)
        dispatcher.tick()
        _save_clock(folder, clock)
        time.sleep(0.01)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
